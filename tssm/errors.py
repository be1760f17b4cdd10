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
    """A loss or auxiliary variable became NaN or Inf (in ``epoch``, when known)."""

    def __init__(self, message: str, epoch: int | None = None):
        super().__init__(message)
        self.epoch = epoch

    def at_epoch(self, epoch: int) -> str:
        """The message, naming the epoch (the one the error knows, else ``epoch``)."""
        return str(self) if self.epoch is not None else f"run diverged in epoch {epoch}: {self}"


class Interrupted(TSSMError):
    """A run stopped by a signal or the user after a checkpoint; rerunning resumes it."""


class DistributedError(TSSMError):
    """A peer rank died, stalled or was misconfigured."""


#: What Ctrl-C before training says (after a checkpoint, the run itself says how to resume).
NOTHING_TRAINED = "interrupted by the user before the run started; nothing was trained"


def exit_before_start(signum, frame) -> None:
    """SIGINT handler of a ``tssm`` process until its training starts: one line, exit 4.

    A KeyboardInterrupt raised inside an import (torch, numpy, sklearn) can leave a module half
    made and surface as another error with a traceback; before training there is nothing to
    save, so the process ends at once instead."""
    import os
    import sys

    print(f"error: {NOTHING_TRAINED}", file=sys.stderr, flush=True)
    os._exit(4)


def guard_start_up() -> None:
    """Make Ctrl-C during start-up :func:`exit_before_start`, unless someone (a test, an
    embedding program) already chose a SIGINT handler. Called at a process's first line
    (``python -m tssm``) and again by the CLI (the ``tssm`` console script); ``run`` gives
    Ctrl-C back to training once it starts."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, exit_before_start)


def warn(message: str) -> None:
    """One line on stderr, ``warning: ...`` (something the user should know; the run goes on)."""
    import sys

    print(f"warning: {message}", file=sys.stderr, flush=True)
