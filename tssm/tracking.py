"""The record of a run: ``metrics.csv``, ``run.json`` and one MLflow run.

The files under the run directory are the record the pipeline depends on; MLflow is the
index for browsing. Files are written atomically (temp file + rename) so a killed run never
leaves a half-written file that looks finished. MLflow problems (a locked sqlite store, a
missing server) are retried and then reported as warnings: they never lose the files.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from .config import RunConfig

DEFAULT_TRACKING_URI = "sqlite:///results/mlflow.db"


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``path`` through a temp file and a rename, readable as the umask says (mkstemp
    alone would make it 0600: on a shared cluster, collaborators could not read it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_marker(path: str | Path, info: dict) -> int:
    """A pipeline step's marker: ``info`` as JSON at ``path`` (atomically) and on stdout; exit 0."""
    atomic_write_text(Path(path), json.dumps(info, indent=2) + "\n")
    print(json.dumps(info))
    return 0


def git_commit() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def environment(device: torch.device, threads: int, world_size: int) -> dict[str, Any]:
    """Library versions and hardware, recorded with every run."""
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
    }
    try:
        import torchvision

        env["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def retry_locked(fn, *args, attempts: int = 8, **kwargs):
    """Call an MLflow function, retrying while sqlite says the database is locked."""
    delay = 0.2
    for i in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # MLflow wraps sqlite's OperationalError in several types
            if "locked" not in str(e).lower() or i == attempts - 1:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


class Recorder:
    """Writes one run's files and its MLflow run. Only the main rank creates one."""

    def __init__(self, cfg: RunConfig, env: dict[str, Any]):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.rows: list[dict[str, float]] = []
        self.commit = git_commit()
        self._mlflow = None
        self._run_id: str | None = None
        self._started = time.time()

    # -- MLflow -------------------------------------------------------------------------
    def tags(self) -> dict[str, str]:
        c = self.cfg
        tags = {
            "dataset": c.dataset, "model": c.model, "method": c.method, "splits": str(c.splits),
            "seed": str(c.seed), "git_commit": self.commit,
            "config_hash": c.config_hash(), "out": str(self.out),
        }
        tags.update({k: str(v) for k, v in c.tags.items()})
        return tags

    def start_mlflow(self, resume_run_id: str | None = None) -> None:
        if not self.cfg.mlflow:
            return
        try:
            import mlflow
            from mlflow.tracking import MlflowClient

            uri = self.cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
            if uri.startswith("sqlite:///"):
                Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            client = MlflowClient(tracking_uri=uri)
            exp = retry_locked(client.get_experiment_by_name, self.cfg.experiment)
            exp_id = exp.experiment_id if exp else retry_locked(client.create_experiment, self.cfg.experiment)
            if resume_run_id:
                self._run_id = resume_run_id
                retry_locked(client.update_run, resume_run_id, status="RUNNING")
            else:
                run = retry_locked(client.create_run, exp_id, tags=self.tags(), run_name=self.run_name())
                self._run_id = run.info.run_id
                params = [mlflow.entities.Param(k, str(v)[:6000]) for k, v in self.cfg.hyperparameters().items()]
                retry_locked(client.log_batch, self._run_id, params=params)
            self._mlflow = client
        except Exception as e:
            warnings.warn(f"MLflow logging disabled for this run: {e}")
            self._mlflow = None

    def run_name(self) -> str:
        c = self.cfg
        return f"{c.dataset}-{c.model}-{c.method}-n{c.splits}-seed{c.seed}"

    @property
    def run_id(self) -> str | None:
        return self._run_id

    def _mlflow_call(self, fn, *args, **kwargs) -> None:
        if self._mlflow is None:
            return
        try:
            retry_locked(fn, *args, **kwargs)
        except Exception as e:
            warnings.warn(f"MLflow call failed ({e}); the run's files are unaffected")

    # -- per epoch ----------------------------------------------------------------------
    def log_epoch(self, row: dict[str, float]) -> None:
        self.rows.append(row)
        self.write_metrics()
        if self._mlflow is not None:
            from mlflow.entities import Metric

            ts = int(time.time() * 1000)
            step = int(row["epoch"])
            metrics = [Metric(k, float(v), ts, step) for k, v in row.items() if k != "epoch" and v == v and abs(v) != float("inf")]
            self._mlflow_call(self._mlflow.log_batch, self._run_id, metrics=metrics)

    def write_metrics(self) -> None:
        if not self.rows:
            return
        cols = list(dict.fromkeys(k for r in self.rows for k in r))
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols)
        w.writeheader()
        w.writerows(self.rows)
        atomic_write_text(self.out / "metrics.csv", buf.getvalue())

    def write_run_json(self, status: str, reason: str | None = None, extra: dict[str, Any] | None = None) -> dict:
        info = {
            "status": status,
            "reason": reason,
            "config": self.cfg.to_dict(),
            "config_hash": self.cfg.config_hash(),
            "git_commit": self.commit,
            "environment": self.env,
            "epochs_done": len(self.rows),
            "final": self.rows[-1] if self.rows else {},
            "wall_time_s": time.time() - self._started,
            "mlflow_run_id": self._run_id,
        }
        info.update(extra or {})
        atomic_write_text(self.out / "run.json", json.dumps(info, indent=2, default=str))
        return info

    def finish(self, status: str, reason: str | None = None, extra: dict[str, Any] | None = None) -> dict:
        """Write run.json (last, so its presence means the run ended) and close the MLflow run."""
        self.write_metrics()
        info = self.write_run_json(status, reason, extra)
        if self._mlflow is not None:
            if (self.out / "metrics.csv").exists():
                self._mlflow_call(self._mlflow.log_artifact, self._run_id, str(self.out / "metrics.csv"))
            self._mlflow_call(self._mlflow.log_artifact, self._run_id, str(self.out / "run.json"))
            self._mlflow_call(self._mlflow.set_tag, self._run_id, "status", status)
            if reason:
                self._mlflow_call(self._mlflow.set_tag, self._run_id, "failure_reason", reason[:5000])
            self._mlflow_call(self._mlflow.set_terminated, self._run_id, "FINISHED" if status == "finished" else "FAILED")
        return info
