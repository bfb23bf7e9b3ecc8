"""Which way a metric improves: ``"min"`` (errors, losses) or ``"max"`` (accuracies).

Every place that selects something — checkpoints per mode, learning rates in
``ace.reproduction.aggregate``, the best run in the figures, the value ``train.py`` hands to a
Hydra sweeper — reads the direction declared by the task (``results.json`` records it) and
compares through these functions, so no code outside a task assumes "lower is better".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TypeVar

__all__ = ["DIRECTIONS", "check_direction", "is_better", "best", "objective", "worst_value"]

DIRECTIONS = ("min", "max")
T = TypeVar("T")


def check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"a metric direction must be 'min' or 'max', got {direction!r}")
    return direction


def is_better(value: float, than: float, direction: str) -> bool:
    """Whether ``value`` is strictly better than ``than``; a non-finite value never is, and any
    finite value beats a non-finite one (NaN from a diverged run must not win a selection)."""
    check_direction(direction)
    if not math.isfinite(value):
        return False
    if not math.isfinite(than):
        return True
    return value < than if direction == "min" else value > than


def worst_value(direction: str) -> float:
    """The starting point of a running best: +inf for ``min``, −inf for ``max``."""
    return math.inf if check_direction(direction) == "min" else -math.inf


def best(items: Iterable[T], key: Callable[[T], float], direction: str) -> T | None:
    """The first item with the best finite ``key`` (ties keep the earlier item); None if none
    has a finite value."""
    chosen, chosen_value = None, math.nan
    for item in items:
        value = key(item)
        if math.isfinite(value) and (chosen is None or is_better(value, chosen_value, direction)):
            chosen, chosen_value = item, value
    return chosen


def objective(value: float, direction: str) -> float:
    """The value a minimising sweeper should see: ``value`` for ``min``, ``−value`` for ``max``."""
    return value if check_direction(direction) == "min" else -value
