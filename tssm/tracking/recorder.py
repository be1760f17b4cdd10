"""The record of one run: ``metrics.csv``, ``run.json`` and one MLflow run.

The files under the run directory are the record the pipeline depends on; MLflow is the
index for browsing. A store, server or experiment problem is a :class:`TrackingError` when
the run starts (before training), not a warning at the end; a call that fails later (after
the retries) stops the run's MLflow logging, and the run is closed FAILED with the tag
``tracking_error`` (its files are complete).
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import hashlib
import io
import json
import os
import time
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..environment import git_commit
from ..errors import warn
from ..files import atomic_write_text
from .experiment import ensure_experiment
from .store import (DEFAULT_TRACKING_URI, RETRY_SECONDS, TrackingError, artifact_repository, artifacts_hint,
                    open_client, retry_locked, short_error, sqlite_path)

#: The run folder's note of its MLflow run (tracking URI, run id), written when the run starts.
RUN_MARKER = ".mlflow_run.json"
#: The environment variable that names a training run's parent run (the pipeline sets it to
#: its study run: one parent per pipeline config, every training run its child).
PARENT_ENV = "TSSM_MLFLOW_PARENT_RUN_ID"
#: A training run's description (the run page shows it above params and artifacts).
RUN_NOTE = ("Training run of `tssm train`; its files: `{out}`. Params: the settings its method and model "
            "read. Artifacts: metrics.csv, run.json (and point.yaml under the pipeline). {artifacts}")


def run_params(cfg: RunConfig) -> dict[str, Any]:
    """The run's params: the settings that change its numbers (``hyperparameters``) that its
    method and model read. Dropped: the common settings the method ignores (``Solver.ignores``),
    the model settings its builder does not take (no ``channels`` on an MLP), the split
    settings of an unsplit run, and unset values (no ``None``; ``lr`` unset: the rate used)."""
    import inspect

    from .. import models

    values = dict(cfg.hyperparameters())
    builder_keys = {name: set(inspect.signature(getattr(models, name)).parameters) - {"input_shape", "num_classes"}
                    for name in models.MODELS}
    for key in set().union(*builder_keys.values()) - builder_keys.get(cfg.model, set()):
        values.pop(key, None)
    for key in getattr(cfg.method_class, "ignores", ()):
        values.pop(key, None)
    if cfg.splits == 1:
        for key in ("cuts", "balance", "balance_workers"):
            values.pop(key, None)
    if "lr" in values and values["lr"] is None:
        with contextlib.suppress(Exception):
            values["lr"] = cfg.w_lr
    return {k: v for k, v in values.items() if v is not None}


def source_tags(entry_point: str) -> dict[str, str]:
    """MLflow's system tags as ``mlflow.start_run`` sets them (user, source name and type, git),
    with the source named after tssm's entry point and the commit of this checkout."""
    try:
        from mlflow.tracking.context.registry import resolve_tags

        tags = dict(resolve_tags({}))
    except Exception:
        tags = {}
    tags["mlflow.source.name"] = entry_point
    tags["mlflow.source.type"] = "LOCAL"
    tags.setdefault("mlflow.user", os.environ.get("USER") or os.environ.get("LOGNAME") or "unknown")
    commit = git_commit()
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit
    return tags


def dataset_entity(data, cfg: RunConfig):
    """The run's data as an MLflow dataset: name, digest of the tensors, source, schema and
    the split sizes (profile)."""
    from mlflow.entities import Dataset as MlflowDataset

    h = hashlib.sha256()
    for t in (data.x_train, data.y_train, data.x_test, data.y_test):
        t = t.detach().to("cpu").contiguous()
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    name = cfg.dataset
    if cfg.n_train is not None or cfg.n_test is not None:
        name += f"[train {len(data.y_train)}, test {len(data.y_test)}]"
    if cfg.dataset == "digits":
        source_type, source = "code", {"uri": "sklearn.datasets.load_digits (embedded in tssm.data)"}
    else:
        source_type, source = "local", {"uri": str(Path(cfg.data_root).resolve()), "dataset": cfg.dataset}
    shape = [-1, *data.input_shape]
    schema = {"mlflow_tensorspec": {
        "features": json.dumps([{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": shape}}]),
        "targets": json.dumps([{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]),
    }}
    profile = {"train_rows": len(data.y_train), "test_rows": len(data.y_test), "input_shape": list(data.input_shape),
               "num_classes": data.num_classes}
    return MlflowDataset(name=name, digest=h.hexdigest()[:8], source_type=source_type, source=json.dumps(source),
                         schema=json.dumps(schema), profile=json.dumps(profile))


class Recorder:
    """Writes one run's files and its MLflow run. Only the main rank creates one.

    ``connect()`` (when the run starts) opens the store and the experiment, ``start_mlflow()``
    creates (or, resuming, reopens) the run; either raises :class:`TrackingError`. Later
    failures stop the MLflow logging and close the run FAILED with the tag ``tracking_error``.

    ``log_epoch`` writes an epoch to the files; ``log_pending`` sends MLflow every epoch it does
    not hold yet (the loop calls it after the epoch's checkpoint). So a run killed between the
    two, or resumed against another store, ends with each epoch in its MLflow run exactly once.
    ``log_system_metrics`` adds MLflow's CPU/GPU/memory/disk sampling (default: the config's
    ``system_metrics``, off unless set).

    What the run shows in MLflow: a short name (:meth:`run_name`), the tags a user filters on
    (:meth:`tags`), params = the settings its method and model read (:func:`run_params`), and,
    under a pipeline, the pipeline's parent run (:data:`PARENT_ENV`)."""

    def __init__(self, cfg: RunConfig, env: dict[str, Any], *, log_system_metrics: bool | None = None):
        self.cfg = cfg
        self.out = Path(cfg.out)  # made and checked when the run claims it (tssm.rundir)
        self.env = env
        self.rows: list[dict[str, float]] = []
        self.commit = git_commit()
        self.log_system_metrics = bool(getattr(cfg, "system_metrics", False)) if log_system_metrics is None \
            else log_system_metrics
        self.tracking_uri = cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
        self._mlflow = None  # the client, while the run is being logged
        self._experiment = None
        self._run_id: str | None = None
        self._logged_step = -1  # the last epoch the MLflow run holds
        self._artifact_uri: str | None = None
        self._error: str | None = None  # the first MLflow failure after the start
        self._monitor = None
        self._started = time.time()

    # -- MLflow -------------------------------------------------------------------------
    def tags(self) -> dict[str, str]:
        """Provenance (source, user, commit, config hash, folder) and what a user filters on:
        dataset, model, method, splits (n), seed, preset, the method's role (where it declares
        one), ``tssm.kind = train``, and the config's own ``tags`` (pipeline_config, variant,
        cores, ...)."""
        c = self.cfg
        tags = source_tags("tssm train")
        tags.update({
            "dataset": c.dataset, "model": c.model, "method": c.method, "splits": str(c.splits),
            "seed": str(c.seed), "git_commit": self.commit, "tssm.kind": "train",
            "config_hash": c.config_hash(), "out": str(self.out),
            "mlflow.note.content": RUN_NOTE.format(out=self.out, uri=self.tracking_uri,
                                                   artifacts=artifacts_hint(self.tracking_uri)),
        })
        role = getattr(c.method_class, "role", None)
        if isinstance(role, str) and role:
            tags["role"] = role
        if c.preset is not None:  # the preset and what it set (params hold every final value)
            tags["preset"] = c.preset
            tags["preset.set"] = ", ".join(f"{k}={v}" for k, v in c.preset_values().items())
        tags.update({k: str(v) for k, v in c.tags.items()})
        return tags

    def connect(self) -> None:
        """Open the MLflow store and find (or create) the experiment; raises
        :class:`TrackingError` before any training when either is unusable."""
        if not self.cfg.mlflow or self._mlflow is not None:
            return
        client = open_client(self.tracking_uri)
        self._experiment = ensure_experiment(client, self.tracking_uri, self.cfg.experiment)
        self._mlflow = client

    def start_mlflow(self, resume_run_id: str | None = None, dataset=None, resume_uri: str | None = None) -> None:
        """Create the run (tags, params, the dataset as input) or, resuming, reopen it; then log
        the epochs it lacks (a resumed run's earlier epochs, when it had to be created anew).

        ``resume_uri`` is the store the checkpoint's run was logged to: a run resumed against
        another store gets a new run there with every epoch so far, and the old one is closed
        KILLED (tag ``continued_in``) where the old store can still be reached.

        One MLflow run per run folder: the folder remembers its run (:data:`RUN_MARKER`), and a
        run that starts afresh where an earlier one left a run (killed before its first
        checkpoint, an orphan that finished, a record replaced by ``--overwrite``) supersedes
        it (:meth:`_supersede`). Until :meth:`finish`, an exit of the process closes the run
        FAILED (:meth:`_close_on_exit`) rather than leave it RUNNING."""
        if not self.cfg.mlflow:
            return
        self.connect()
        client = self._mlflow
        previous = self._previous_run()
        reopened = False
        try:
            reopened = bool(resume_run_id) and self._reopen(resume_run_id, resume_uri)
            if not reopened:
                self._create_run(dataset, resume_run_id, resume_uri, previous)
        except Exception as e:
            if self._run_id:  # not left RUNNING
                with contextlib.suppress(Exception):
                    client.set_tag(self._run_id, "tracking_error", short_error(e))
                    client.set_terminated(self._run_id, "FAILED")
            raise TrackingError(f"cannot start the MLflow run in experiment {self.cfg.experiment!r} of "
                                f"{self.tracking_uri}: {short_error(e)}") from None
        self._remember_run()
        atexit.register(self._close_on_exit)
        if resume_run_id and not reopened:
            self._close_moved_run(resume_uri, resume_run_id)
        if previous is not None and previous[1] not in (self._run_id, resume_run_id):
            self._supersede(*previous)
        self._start_monitor()
        self.log_pending()

    def _create_run(self, dataset, resume_run_id: str | None, resume_uri: str | None,
                    previous: tuple[str, str] | None) -> None:
        client = self._mlflow
        tags = self.tags()
        if resume_run_id:
            tags["resumed_from_run"] = f"{resume_uri or self.tracking_uri} {resume_run_id}"
        if previous is not None and previous[1] != resume_run_id:
            tags["supersedes"] = previous[1] if previous[0] == self.tracking_uri else " ".join(previous)
        parent = self._parent_run()
        if parent:
            tags["mlflow.parentRunId"] = parent
        run = retry_locked(client.create_run, self._experiment.experiment_id, tags=tags, run_name=self.run_name())
        self._run_id, self._artifact_uri = run.info.run_id, run.info.artifact_uri
        from mlflow.entities import DatasetInput, InputTag, Param

        params = [Param(k, str(v)[:6000]) for k, v in run_params(self.cfg).items()]
        retry_locked(client.log_batch, self._run_id, params=params)
        if dataset is not None:
            entity = dataset_entity(dataset, self.cfg)
            retry_locked(client.log_inputs, self._run_id,
                         [DatasetInput(entity, tags=[InputTag("mlflow.data.context", "training")])])

    # -- one MLflow run per run folder ----------------------------------------------------
    def _previous_run(self) -> tuple[str, str] | None:
        """(tracking URI, run id) of the MLflow run an earlier run in this folder started, if any."""
        try:
            info = json.loads((self.out / RUN_MARKER).read_text())
            return str(info["tracking_uri"]), str(info["run_id"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _remember_run(self) -> None:
        """The folder's MLflow run, for a later run in it (written before any epoch)."""
        try:
            atomic_write_text(self.out / RUN_MARKER, json.dumps(
                {"tracking_uri": self.tracking_uri, "experiment": self.cfg.experiment, "run_id": self._run_id,
                 "config_hash": self.cfg.config_hash()}, indent=1) + "\n")
        except OSError as e:
            warn(f"cannot write {self.out / RUN_MARKER} ({e.strerror or e}); a rerun of this folder will not "
                 f"know this MLflow run")

    def _supersede(self, uri: str, run_id: str) -> None:
        """Mark an earlier run of this folder as replaced by this one: tag ``superseded_by``,
        KILLED if it was left RUNNING, and (same store) deleted -- MLflow's soft delete: hidden
        from the runs table and searches, shown under the UI's "Deleted" filter, restorable.
        Best effort, quickly: an unreachable old store only costs a warning."""
        same = uri == self.tracking_uri
        try:
            if not same and sqlite_path(uri) is not None and not sqlite_path(uri).exists():
                return
            client = self._mlflow if same else open_client(uri)
            run = retry_locked(client.get_run, run_id, deadline_s=15)
            if run.info.lifecycle_stage == "deleted":
                return
            retry_locked(client.set_tag, run_id, "superseded_by", self._run_id if same else f"{self.tracking_uri} "
                         f"{self._run_id}", deadline_s=15)
            if run.info.status in ("RUNNING", "SCHEDULED"):
                retry_locked(client.set_terminated, run_id, "KILLED", deadline_s=15)
            if same:
                retry_locked(client.delete_run, run_id, deadline_s=15)
        except Exception as e:
            if "RESOURCE_DOES_NOT_EXIST" in str(e) or "not found" in str(e).lower():
                return
            warn(f"the earlier MLflow run {run_id} of {self.out} could not be marked superseded ({short_error(e)})")

    def _close_on_exit(self) -> None:
        """At interpreter exit, a run :meth:`finish` did not close is closed FAILED (an error
        that skipped the record, e.g. a full disk); SIGKILL leaves it to the next run's
        :meth:`_supersede`."""
        self.close_failed("the process ended before the run's record was written")

    def close_failed(self, reason: str) -> None:
        """Close the MLflow run FAILED with ``reason`` as its ``failure_reason`` tag, without
        writing a file (when the disk refuses them), so that it is never left RUNNING."""
        if self._mlflow is None or self._run_id is None:
            return
        if self._monitor is not None:
            with contextlib.suppress(Exception):
                self._monitor.finish()
        for call in ((self._mlflow.set_tag, self._run_id, "failure_reason", reason[:5000]),
                     (self._mlflow.set_terminated, self._run_id, "FAILED")):
            with contextlib.suppress(Exception):
                retry_locked(*call, deadline_s=5)

    def _reopen(self, run_id: str, resume_uri: str | None) -> bool:
        """Continue a resumed run's MLflow run (and learn the last epoch it holds); False (and a
        new run) when this store does not have it."""
        try:
            run = retry_locked(self._mlflow.get_run, run_id)
        except Exception as e:
            if "RESOURCE_DOES_NOT_EXIST" in str(e) or "not found" in str(e).lower():
                moved = resume_uri is not None and resume_uri != self.tracking_uri
                why = f"was logged to {resume_uri}, not {self.tracking_uri}" if moved else f"is gone from {self.tracking_uri}"
                warn(f"the MLflow run {run_id} of the checkpoint {why}; this run gets a new MLflow run there "
                     f"holding epochs 0-{len(self.rows) - 1} so far")
                return False
            raise
        self._run_id, self._artifact_uri = run_id, run.info.artifact_uri
        history = retry_locked(self._mlflow.get_metric_history, run_id, "train_time_s")
        self._logged_step = max((m.step for m in history), default=-1)
        retry_locked(self._mlflow.update_run, run_id, status="RUNNING")
        return True

    def _close_moved_run(self, uri: str | None, run_id: str) -> None:
        """Close the checkpoint's run in the store it was logged to (KILLED, tag ``continued_in``)
        so it is not left RUNNING; best effort, quickly: that store may be gone for good."""
        if not uri or uri == self.tracking_uri or (sqlite_path(uri) is not None and not sqlite_path(uri).exists()):
            return
        with contextlib.suppress(Exception):
            old = open_client(uri)
            retry_locked(old.set_tag, run_id, "continued_in", f"{self.tracking_uri} {self._run_id}", deadline_s=5)
            retry_locked(old.set_terminated, run_id, "KILLED", deadline_s=5)

    def _start_monitor(self) -> None:
        if not self.log_system_metrics:
            return
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            self._monitor = SystemMetricsMonitor(self._run_id, tracking_uri=self.tracking_uri)
            self._monitor.start()
        except Exception as e:
            warn(f"MLflow system metrics are off for this run: {short_error(e)}")
            self._monitor = None

    def run_name(self) -> str:
        """Short and distinct within a study, the distinguishing part first: method, n, seed,
        the run folder's further levels (an equal-resources budget, a variant, as in
        tssm.layout), then dataset/model: ``gsadmm-n2-s0-cores4-rho10 digits/mlp``."""
        c = self.cfg
        parts = [c.method, f"n{c.splits}", f"s{c.seed}"]
        parts += [f"cores{c.tags['cores']}"] if c.tags.get("cores") else []
        parts += [c.tags["variant"]] if c.tags.get("variant") else []
        return f"{'-'.join(parts)} {c.dataset}/{c.model}"

    def _parent_run(self) -> str | None:
        """The parent run named by :data:`PARENT_ENV` (the pipeline's study run), or the run
        that superseded it (an edited config's new study run); a name this store lacks is a
        warning, not a child of nothing."""
        parent = os.environ.get(PARENT_ENV, "").strip()
        for _ in range(10):  # a chain of superseded parents, bounded
            if not parent:
                return None
            try:
                run = retry_locked(self._mlflow.get_run, parent, deadline_s=15)
            except Exception as e:
                warn(f"{PARENT_ENV}={parent} is not a run of {self.tracking_uri} ({short_error(e, 120)}); "
                     f"this run is recorded without a parent")
                return None
            if run.info.experiment_id != self._experiment.experiment_id:
                warn(f"{PARENT_ENV}={parent} is a run of another experiment; this run is recorded without a parent")
                return None
            if run.info.lifecycle_stage != "deleted" or not run.data.tags.get("superseded_by"):
                return parent
            parent = run.data.tags["superseded_by"]
        return parent

    @property
    def run_id(self) -> str | None:
        return self._run_id

    @property
    def tracking_error(self) -> str | None:
        """The first MLflow failure after the run started (None: the MLflow record is whole)."""
        return self._error

    def _mlflow_call(self, fn, *args, **kwargs) -> bool:
        """A logging call; after the first failure the run's MLflow logging stops (one line)."""
        if self._mlflow is None or self._run_id is None or self._error is not None:
            return False
        try:
            retry_locked(fn, *args, **kwargs)
            return True
        except Exception as e:
            self._error = short_error(e)
            warn(f"MLflow logging stopped ({self._error}); the run's files are unaffected, "
                 f"and its MLflow run will be marked FAILED with tag tracking_error")
            return False

    def _log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        def log():
            artifact_repository(self.tracking_uri, self._artifact_uri).log_artifact(str(path), artifact_path)
        self._mlflow_call(log)

    # -- per epoch ----------------------------------------------------------------------
    def log_epoch(self, row: dict[str, float]) -> None:
        """The epoch in the files (MLflow gets it from :meth:`log_pending`)."""
        self.rows.append(row)
        self.write_metrics()

    def log_pending(self) -> None:
        """Send MLflow every recorded epoch it does not hold yet, in order, one batch each."""
        if self._mlflow is None or self._run_id is None:
            return
        from mlflow.entities import Metric

        for row in self.rows:
            step = int(row["epoch"])
            if step <= self._logged_step:
                continue
            ts = int(time.time() * 1000)
            metrics = [Metric(k, float(v), ts, step) for k, v in row.items() if k != "epoch" and v == v and abs(v) != float("inf")]
            if not self._mlflow_call(self._mlflow.log_batch, self._run_id, metrics=metrics):
                return
            self._logged_step = step

    def write_metrics(self) -> None:
        if not self.rows:
            return
        cols = list(dict.fromkeys(k for r in self.rows for k in r))
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
            **self.cfg.method_class.record_fields(),  # role and label, for reporting
            "preset_values": self.cfg.preset_values(),
            "git_commit": self.commit,
            "environment": self.env,
            "epochs_done": len(self.rows),
            "final": self.rows[-1] if self.rows else {},
            "wall_time_s": time.time() - self._started,
            "mlflow_run_id": self._run_id,
            "mlflow_error": self._error,
        }
        info.update(extra or {})
        atomic_write_text(self.out / "run.json", json.dumps(info, indent=2, default=str))
        return info

    def finish(self, status: str, reason: str | None = None, extra: dict[str, Any] | None = None) -> dict:
        """Write run.json (last, so its presence means the run ended) and close the MLflow run:
        FINISHED, FAILED (failed, diverged, or its MLflow record is incomplete) or KILLED
        (interrupted; a resumed run reopens it)."""
        self.write_metrics()
        self.log_pending()
        info = self.write_run_json(status, reason, extra)
        if self._mlflow is None or self._run_id is None:
            return info
        atexit.unregister(self._close_on_exit)
        if self._monitor is not None:
            with contextlib.suppress(Exception):
                self._monitor.finish()
        for name in ("metrics.csv", "run.json", "point.yaml"):
            if (self.out / name).exists():
                self._log_artifact(self.out / name)
        self._mlflow_call(self._mlflow.set_tag, self._run_id, "status", status)
        if reason:
            self._mlflow_call(self._mlflow.set_tag, self._run_id, "failure_reason", reason[:5000])
        state = {"finished": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED")
        error = self._error
        if error is not None:  # the record is incomplete: say so, and never leave it RUNNING
            state = "FAILED"
            for call in ((self._mlflow.set_tag, self._run_id, "tracking_error", error[:5000]),
                         (self._mlflow.set_terminated, self._run_id, state)):
                with contextlib.suppress(Exception):
                    retry_locked(*call, deadline_s=min(RETRY_SECONDS, 15))
            return self.write_run_json(status, reason, extra)
        if not self._mlflow_call(self._mlflow.set_terminated, self._run_id, state):
            return self.write_run_json(status, reason, extra)  # now with mlflow_error
        return info
