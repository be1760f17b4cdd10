"""Epoch-boundary checkpoints: weights, optimizer state, auxiliary variables, clock, record.

One file per rank (``<out>/checkpoint/rank<r>.pt``), written atomically. A run started
again with the same config resumes after the last finished epoch and ends with the same
numbers as an uninterrupted run (the data order is a function of seed and epoch only). A
checkpoint made by a different config is never reused.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from .config import RunConfig
from .solvers import Stage


def save_checkpoint(path: Path, cfg: RunConfig, stages: list[Stage], epoch: int, train_clock: float,
                    rows: list[dict], mlflow_run_id: str | None) -> None:
    state = {
        "config_hash": cfg.config_hash(),
        "epoch": epoch,
        "train_clock": train_clock,
        "rows": rows,
        "mlflow_run_id": mlflow_run_id,
        "torch_rng": torch.get_rng_state(),
        "stages": {
            st.index: {
                "net": st.net.state_dict(),
                "optimizer": st.optimizer.state_dict() if st.optimizer else None,
                "aux": st.aux(),
                "init_params": st.init_params,
            }
            for st in stages
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, cfg: RunConfig, stages: list[Stage]) -> dict[str, Any] | None:
    """Restore ``stages`` in place from ``path``; returns the checkpoint's bookkeeping or None."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location=stages[0].p.device if stages and stages[0].p is not None else "cpu",
                           weights_only=False)
    except Exception as e:  # a truncated file from a kill during the (atomic) write cannot happen; be safe anyway
        warnings.warn(f"ignoring unreadable checkpoint {path}: {e}")
        return None
    if state.get("config_hash") != cfg.config_hash():
        warnings.warn(f"ignoring checkpoint {path}: it was made by a different config; starting from scratch")
        return None
    device = next(iter(stages[0].net.parameters())).device if stages else torch.device("cpu")
    for st in stages:
        s = state["stages"][st.index]
        st.net.load_state_dict(s["net"])
        if st.optimizer and s["optimizer"]:
            st.optimizer.load_state_dict(s["optimizer"])
        for name, t in s["aux"].items():
            setattr(st, name, t.to(device))
        st.init_params = [t.to(device) for t in s["init_params"]]
    torch.set_rng_state(state["torch_rng"])
    return state
