"""Modules that cache device tensors built on first use (graphs, bases) in dict attributes."""

from __future__ import annotations

from torch import nn


class DeviceCaches(nn.Module):
    """Drops the dict attributes named in ``_device_caches`` when pickled or deep-copied.

    Their tensors stay on the device of the forward that built them (``.cpu()`` does not move a
    plain dict), so a model trained on a GPU and saved whole (``feq_pruned.pt``) would otherwise
    need CUDA to load. A copy rebuilds its caches on first use.
    """

    _device_caches: tuple[str, ...] = ()

    def __getstate__(self) -> dict:
        state = super().__getstate__()  # a copy of __dict__
        for name in self._device_caches:
            state[name] = {}
        return state
