"""A quiet console for ``train.py``: no library advertising, no third-party deprecation noise.

* Lightning prints "💡 Tip: ... install litlogger / litmodels" at every Trainer start, and "The
  following callbacks returned in `LightningModule.configure_callbacks` will override existing
  callbacks" at every post-training validate/test (expected: the module re-attaches its own
  checkpoint callbacks): both dropped by a logging filter on Lightning's loggers; its other
  messages are kept.
* Deprecation and future warnings raised inside third-party packages (Lightning's pytree shim,
  PyG, e3nn, W&B) say nothing a user of ace can act on: ignored. Warnings from ace itself, and
  every other warning category (e.g. Lightning's "fewer batches than the logging interval"),
  are kept.
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["quiet_third_party", "AdvertisingFilter"]

LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric",
                     "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class AdvertisingFilter(logging.Filter):
    """Drops log records that advertise packages (Lightning's "💡 Tip" lines) or repeat what is
    expected (the module's callbacks replacing the trainer's at every validate/test)."""

    MARKERS = ("💡 Tip", "litlogger", "litmodels", "will override existing callbacks passed to")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(marker in message for marker in self.MARKERS)


def quiet_third_party() -> None:
    """Install the filters (idempotent)."""
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, AdvertisingFilter) for f in logger.filters):
            logger.addFilter(AdvertisingFilter())
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=r"^(?!ace(\.|$))")
