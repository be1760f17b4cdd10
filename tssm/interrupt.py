"""Interrupt a training run at a chosen epoch, as a scheduler's SIGTERM would.

The kill-and-resume checks (the tests, the GPU check) need the signal to arrive right after an
epoch whose state is known; this sends it from inside the loop, so no timing is involved.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def sigterm_after_epoch(epoch: int) -> Iterator[None]:
    """Within the block, ``tssm.run.train`` sends itself SIGTERM once epoch ``epoch`` has trained
    (the run then checkpoints and raises ``tssm.errors.Interrupted``); the loop is restored after."""
    import tssm.run as run

    real = run.train_epoch

    def train_epoch_then_stop(s, state, e):
        row = real(s, state, e)
        if e == epoch:
            os.kill(os.getpid(), signal.SIGTERM)
        return row

    run.train_epoch = train_epoch_then_stop
    try:
        yield
    finally:
        run.train_epoch = real
