"""User-facing errors: one line that says what is wrong and how to fix it.

The CLI prints ``error: <message>`` for any :class:`XtraError` and exits with code 2, so raise
these (never bare exceptions) for bad input a user can correct.
"""

from __future__ import annotations


class XtraError(Exception):
    """Bad input a user can fix; the message is a single line naming the problem and the fix."""


class ConfigError(XtraError):
    """A configuration field is unknown, malformed or out of range."""


class GameError(XtraError):
    """An unknown game, or a game whose ROM or package is missing."""


class DatasetError(XtraError):
    """A dataset that is missing, corrupt, of the wrong game, or of an unknown format version."""


class CheckpointError(XtraError):
    """A checkpoint or run directory that cannot be loaded or resumed."""
