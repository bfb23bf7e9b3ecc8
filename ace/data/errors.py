"""Errors shared by the data modules."""

from __future__ import annotations

__all__ = ["DataIntegrityError"]


class DataIntegrityError(RuntimeError):
    """A dataset on disk is missing, incomplete, corrupted or was made with other settings.

    The message names the offending file or key and says how to fix it (usually: delete the
    directory and regenerate / re-download).
    """
