"""Errors the user can act on.

Every problem a user can cause (bad config, missing data, impossible split, a diverging
run) raises a subclass of :class:`TSSMError` with a message that names the problem and
the fix. The CLI prints the message and exits with status 2 instead of a traceback.
"""


class TSSMError(Exception):
    """Base class of every error the user can fix."""


class ConfigError(TSSMError, ValueError):
    """A configuration value is unknown, out of range or malformed."""


class DataUnavailableError(TSSMError):
    """A dataset is not on disk and cannot be downloaded."""


class DivergenceError(TSSMError):
    """A loss or auxiliary variable became NaN or Inf."""


class DistributedError(TSSMError):
    """A peer rank died, stalled or was misconfigured."""
