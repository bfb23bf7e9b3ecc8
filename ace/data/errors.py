"""Errors shared by the data modules."""

from __future__ import annotations

__all__ = ["DataIntegrityError", "DownloadError"]


class DataIntegrityError(RuntimeError):
    """A dataset on disk is missing, incomplete, corrupted or was made with other settings.

    The message names the offending file or key and says how to fix it (usually: delete the
    directory and regenerate / re-download).
    """


class DownloadError(RuntimeError):
    """A download failed (network, HTTP or I/O error, truncated transfer, or a wrong hash).

    The message names the URL and the destination file and says what to do (check the network,
    or fetch the file by hand and point the configuration at it with a ``file://`` URL). No partial
    file is left behind.
    """
