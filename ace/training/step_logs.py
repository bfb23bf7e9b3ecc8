"""Training-step scalars without a host synchronisation per step.

Lightning's ``self.log`` costs about 1 ms per call on a CPU and, on a GPU, its progress bar and
per-step epoch reduction read values back to the host. :class:`StepScalars` keeps instead, on the
scalars' device, the batch-weighted sums behind each epoch mean (two tensor operations per step,
no transfer), and :meth:`StepScalars.host` turns a step's values into Python floats with *one*
transfer, done only on the steps whose logs are written (``trainer.log_every_n_steps``).

Non-finite training losses are caught the same way: :meth:`StepScalars.add` keeps, on the
device, the first step whose objective was NaN or inf, and :meth:`StepScalars.first_nonfinite`
reads it back when the owner checks (on written steps, before validation and at the end of the
epoch, so before any checkpoint of the epoch is written).
"""

from __future__ import annotations

import torch


class StepScalars:
    """Batch-weighted epoch sums of named scalar tensors, and the first non-finite step."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.names: tuple[str, ...] = ()
        self._sums: torch.Tensor | None = None
        self._weight = 0
        self._first_bad: torch.Tensor | None = None

    def add(self, values: dict[str, torch.Tensor], weight: int, step: int,
            objective: torch.Tensor) -> None:
        """Add ``weight · value`` to each sum; remember ``step`` if ``objective`` is not finite."""
        names = tuple(values)
        stacked = torch.stack([v.detach().float() for v in values.values()])
        if self._sums is None:
            self.names, self._sums = names, torch.zeros_like(stacked)
        elif names != self.names:
            raise ValueError(f"step scalars changed within an epoch: {self.names} -> {names}")
        self._sums.add_(stacked, alpha=weight)
        self._weight += weight
        bad = ~torch.isfinite(objective.detach())
        if self._first_bad is None:
            self._first_bad = torch.full((), -1, dtype=torch.long, device=stacked.device)
        self._first_bad = torch.where(bad & (self._first_bad < 0), step, self._first_bad)

    def epoch_means(self) -> dict[str, torch.Tensor]:
        """``{name: Σ weight·value / Σ weight}`` over the steps added since :meth:`reset`."""
        if self._sums is None:
            return {}
        means = self._sums / self._weight
        return {name: means[i] for i, name in enumerate(self.names)}

    def first_nonfinite(self) -> int | None:
        """The first step (as passed to :meth:`add`) with a non-finite objective; a host read."""
        if self._first_bad is None:
            return None
        step = int(self._first_bad)
        return None if step < 0 else step

    @staticmethod
    def host(values: dict[str, torch.Tensor]) -> dict[str, float]:
        """The values as Python floats, read back in one transfer."""
        if not values:
            return {}
        floats = torch.stack([v.detach().float().reshape(()) for v in values.values()]).tolist()
        return dict(zip(values, floats))
