"""What a run ran on: library versions, hardware, the code's commit (recorded in run.json)."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch


def git_commit() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def environment(device: torch.device, threads: int, world_size: int,
                comm: dict[str, Any] | None = None) -> dict[str, Any]:
    """Library versions and hardware, recorded with every run; ``comm``: how the ranks of a
    distributed run talk (backend, comm_device, local_world_size: what init_distributed chose,
    so a run says whether it got NCCL or gloo)."""
    import numpy

    env = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "threads_per_rank": threads,
        "world_size": world_size,
        "device": str(device),
        **(comm or {}),
    }
    try:
        import torchvision

        env["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env
