"""Epoch-boundary checkpoints: weights, optimizer state, the method's per-stage state and the
loop's :class:`TrainState`.

One file per rank (``<out>/checkpoint/rank<r>.pt``), written atomically. A run started
again with the same config resumes after the last finished epoch and ends with the same
numbers as an uninterrupted run (the data order is a function of seed and epoch only). A
checkpoint made by a different config (or on other data: the config hash covers the data
files' content) is never reused. Checkpoints hold tensors and plain data only and are loaded
with ``weights_only=True``: a tampered file cannot run code.

Each checkpoint records the code that wrote it (:func:`code_version`: the git commit, else the
package version). A checkpoint written by other code is refused with one line
(:class:`CheckpointError`): resuming would make one run of two versions' numbers. ``--overwrite``
starts such a run again from the start instead (docs/reliability.md).
"""

from __future__ import annotations

import errno
import os
import pickle
import tempfile
from functools import lru_cache
from pathlib import Path
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .config import RunConfig
from .environment import git_commit
from .errors import TSSMError, warn
from .files import current_umask
from .solvers import Solver, Stage


class CheckpointError(TSSMError):
    """A checkpoint that must not be resumed silently (written by other code)."""


def _short(version: str) -> str:
    return version[:12] if len(version) == 40 and all(c in "0123456789abcdef" for c in version) else version


@lru_cache(maxsize=1)
def code_version() -> str:
    """What identifies the code that trains: the git commit of the checkout, else (an installed
    package) ``tssm <version>``."""
    from . import __version__

    commit = git_commit()
    return commit if commit != "unknown" else f"tssm {__version__}"


def _one_line(e: Exception) -> str:
    """The first line of an error (torch's refusals of unsafe pickles run to a page)."""
    if isinstance(e, pickle.UnpicklingError):  # torch's page of text; the unpickler's reason is its last line
        lines = [x.strip() for x in str(e).split("Check the documentation")[0].splitlines() if x.strip()]
        reason = lines[-1] if lines else "unpickling failed"
        if "unsupported global" in reason.lower():
            return f"it holds objects other than tensors and plain data, which could run code ({reason})"[:300]
        return f"not a readable checkpoint: {reason}"[:300]
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


@dataclass
class TrainState:
    """What the loop carries from one epoch to the next; a checkpoint saves and restores it
    whole. Every rank keeps one (the same numbers: metrics are gathered on every rank)."""

    epoch: int = 0  # the last finished epoch (0: only the initial state is recorded)
    train_clock: float = 0.0  # seconds of training so far, evaluation excluded
    last_train_loss: float | None = None  # the last recorded epoch's composed training loss
    rows: list[dict[str, float]] = field(default_factory=list)  # the per-epoch record so far
    mlflow_run_id: str | None = None
    tracking_uri: str | None = None  # the store mlflow_run_id lives in

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> "TrainState":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})  # older checkpoints lack some


def save_checkpoint(path: Path, cfg: RunConfig, state: TrainState, stages: list[Stage], solver: Solver) -> None:
    blob = {
        "config_hash": cfg.config_hash(),
        "code_version": code_version(),
        "train_state": state.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "stages": {
            st.index: {
                "net": st.net.state_dict(),
                "optimizer": st.optimizer.state_dict() if st.optimizer else None,
                "solver": solver.state_dict(st),
                "init_params": st.init_params,
            }
            for st in stages
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())
        try:
            torch.save(blob, tmp)
        except RuntimeError as e:  # torch reports a failed write (full disk, file size limit) as RuntimeError
            raise OSError(errno.ENOSPC, f"torch.save could not write the checkpoint ({(str(e).strip().splitlines() or [''])[0][:120]}); "
                          f"the disk is probably full", str(path)) from None
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_checkpoint(path: Path, cfg: RunConfig, stages: list[Stage], solver: Solver, *,
                    other_code: str = "refuse") -> TrainState | None:
    """Restore ``stages`` in place from ``path``; returns the saved loop state, or None when
    there is no usable checkpoint (none, unreadable, or another config's). A checkpoint of other
    code raises :class:`CheckpointError` (``other_code="refuse"``) or is ignored (``"restart"``,
    what ``--overwrite`` asks)."""

    if not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or not {"config_hash", "train_state", "stages"} <= set(blob):
            raise ValueError("not a tssm checkpoint")
        if blob.get("config_hash") != cfg.config_hash():
            warn(f"ignoring checkpoint {path}: it was made by a different config or on other data; "
                 f"starting from scratch")
            return None
        saved = [blob["stages"][st.index] for st in stages]
        written_by = str(blob.get("code_version", "unrecorded (older tssm)"))
        if written_by != code_version():
            if other_code == "restart":
                warn(f"ignoring checkpoint {path}: written by code {_short(written_by)} (this is {_short(code_version())}); "
                     f"--overwrite starts the run again")
                return None
            raise CheckpointError(
                f"checkpoint {path} was written by code {_short(written_by)}, this is {_short(code_version())}: resuming "
                f"would mix two versions' numbers in one run; rerun with --overwrite to train it again from the "
                f"start, or resume with the code of {_short(written_by)}")
    except CheckpointError:
        raise
    except Exception as e:  # not a checkpoint of ours, truncated, or made for other ranks
        why = (f"it lacks subnetwork {e.args[0] + 1}: made by a run with other ranks"
               if isinstance(e, KeyError) and isinstance(e.args[0], int) else _one_line(e))
        warn(f"ignoring unusable checkpoint {path} ({why}); starting from scratch")
        return None
    device = next(iter(stages[0].net.parameters())).device if stages else torch.device("cpu")
    for st, s in zip(stages, saved):
        st.net.load_state_dict(s["net"])
        if st.optimizer and s["optimizer"]:
            st.optimizer.load_state_dict(s["optimizer"])
        solver.load_state_dict(st, s["solver"])
        st.init_params = [t.to(device) for t in s["init_params"]]
    torch.set_rng_state(blob["torch_rng"])
    return TrainState.from_state_dict(blob["train_state"])
