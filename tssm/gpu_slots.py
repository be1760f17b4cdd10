"""One GPU (or one set of GPUs) per job on a local multi-GPU machine.

Snakemake's ``--resources gpu=N`` caps how many GPUs the running jobs ask for together, but
nothing tells a job *which* GPUs: every job would use ``cuda:0``. The train rule therefore
starts each run through this launcher:

    python -m tssm.gpu_slots K -- python -m tssm train ...

which takes K free GPUs of this machine (an ``flock`` per GPU in a folder every job on the
machine shares; it waits while they are taken), sets ``CUDA_VISIBLE_DEVICES`` to them and
``exec``s the command. The locks' descriptors pass to the command, so the GPUs stay taken
exactly as long as the run (and its torchrun ranks) live, whatever kills it. K = 0, or a
job that a scheduler placed (``SLURM_JOB_ID``: SLURM sets the devices), runs the command as
it is. Torch-free: it starts before every run.

The GPUs handed out: ``$TSSM_GPUS`` (ids "0,1,2,3", or a count), else the
``CUDA_VISIBLE_DEVICES`` the pipeline was started with, else the NVIDIA devices the driver
lists.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def visible_gpus(env: dict[str, str] | None = None) -> list[str]:
    """The GPU ids jobs may be given on this machine (see the module docstring)."""
    env = os.environ if env is None else env
    for var in ("TSSM_GPUS", "CUDA_VISIBLE_DEVICES"):
        value = env.get(var)
        if value is not None:
            value = value.strip()
            if value.isdigit() and var == "TSSM_GPUS":
                return [str(i) for i in range(int(value))]
            return [v.strip() for v in value.split(",") if v.strip() and v.strip() != "-1"]
    proc = Path("/proc/driver/nvidia/gpus")
    if proc.is_dir():
        return [str(i) for i in range(len(list(proc.iterdir())))]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(l for l in out.splitlines() if l.startswith("GPU "))]


def slot_dir() -> Path:
    """Where the per-GPU locks live: one folder per user and machine ($TSSM_GPU_SLOTS to move it)."""
    return Path(os.environ.get("TSSM_GPU_SLOTS") or Path(tempfile.gettempdir()) / f"tssm-gpu-slots-{os.getuid()}")


def acquire(count: int, gpus: list[str], folder: Path, poll_s: float = 0.5) -> tuple[list[str], list[int]]:
    """``count`` GPUs of ``gpus`` no other job holds: (their ids, the open lock descriptors)."""
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        taken, fds = [], []
        for gpu in gpus:
            fd = os.open(folder / f"gpu{gpu}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            taken.append(gpu)
            fds.append(fd)
            if len(taken) == count:
                return taken, fds
        for fd in fds:  # not enough free: let go of what we hold and wait (no partial hoarding)
            os.close(fd)
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit():
        print("usage: python -m tssm.gpu_slots GPUS -- COMMAND ...", file=sys.stderr)
        return 2
    count, command = int(argv[0]), argv[2:]
    if count > 0 and not os.environ.get("SLURM_JOB_ID"):
        gpus = visible_gpus()
        if count > len(gpus):
            print(f"error: this job needs {count} GPU(s) but this machine shows {len(gpus)} "
                  f"({', '.join(gpus) or 'none'}); run it on a machine or cluster with enough GPUs "
                  f"(--workflow-profile profiles/slurm), or set TSSM_GPUS", file=sys.stderr)
            return 2
        taken, fds = acquire(count, gpus, slot_dir())
        for fd in fds:
            os.set_inheritable(fd, True)  # the run holds its GPUs until it ends
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(taken)
    try:
        os.execvp(command[0], command)
    except OSError as e:
        print(f"error: cannot start {command[0]}: {e.strerror}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
