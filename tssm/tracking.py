"""The record of a run: ``metrics.csv``, ``run.json`` and one MLflow run.

The files under the run directory are the record the pipeline depends on; MLflow is the
index for browsing. Files are written atomically (temp file + rename) so a killed run never
leaves a half-written file that looks finished.

MLflow, in short:

- every store call goes through :func:`retry_locked` (sqlite's "database is locked", a busy
  server), with a bounded total wait (:data:`RETRY_SECONDS`);
- a sqlite store is created once, under a file lock next to the database, in a temporary file
  renamed into place (:func:`ensure_sqlite_store`): concurrent first use and an interrupted
  creation both leave either no database or a complete one;
- a store, server or experiment problem is a :class:`TrackingError` when the run starts
  (``error: ...``, exit 2, before training), not a warning at the end;
- a call that fails later (after the retries) stops the run's MLflow logging, and the run is
  closed FAILED with the tag ``tracking_error`` (its files are complete);
- experiments of a sqlite store keep their artifacts under ``mlflow-artifacts:/<experiment
  id>``: relative to ``mlartifacts/`` next to the database, so moving ``results/`` keeps them
  (``mlflow ui --backend-store-uri sqlite:///<dir>/mlflow.db --artifacts-destination
  <dir>/mlartifacts`` serves them; :func:`artifact_repository` resolves them without a server).
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from .config import RunConfig
from .errors import TSSMError

DEFAULT_TRACKING_URI = "sqlite:///results/mlflow.db"
#: The longest a single MLflow call waits for a locked store or a busy server, in seconds.
RETRY_SECONDS = float(os.environ.get("TSSM_MLFLOW_RETRY_SECONDS", "60"))
#: Where a sqlite store keeps artifacts: this folder next to the database file.
ARTIFACTS_DIR = "mlartifacts"
#: The artifact root of experiments created in a sqlite store (as ``mlflow server`` does).
PORTABLE_ARTIFACT_ROOT = "mlflow-artifacts:/"
#: The run folder's note of its MLflow run (tracking URI, run id), written when the run starts.
RUN_MARKER = ".mlflow_run.json"
#: Seconds to wait for a tracking server's first answer.
PROBE_TIMEOUT_S = 5


class TrackingError(TSSMError):
    """The MLflow store or server cannot take the run's record."""


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


# ---------------------------------------------------------------------------- the store
def short_error(e: BaseException, limit: int = 300) -> str:
    """One line of an exception: no SQL statement, no traceback, no server HTML."""
    text = str(e).split("[SQL:", 1)[0].split("(Background on this error", 1)[0]
    text = " ".join(text.split())
    return (text[:limit] + "...") if len(text) > limit else (text or type(e).__name__)


_TRANSIENT = ("database is locked", "database table is locked", "temporarily_unavailable", "resource_exhausted",
              "too many requests", "status code 429", "status code 503", "connection reset",
              # two runs logging the same dataset at once: one inserts it, the other's retry finds it
              "unique constraint failed: datasets")


def is_transient(e: BaseException) -> bool:
    """Whether retrying may help: a locked sqlite store, an overloaded server."""
    text = str(e).lower()
    code = str(getattr(e, "error_code", "")).lower()
    return any(t in text for t in _TRANSIENT) or code in ("temporarily_unavailable", "resource_exhausted")


def retry_locked(fn, *args, attempts: int | None = None, deadline_s: float | None = None, **kwargs):
    """Call an MLflow function, retrying while the store is locked or busy, for at most
    ``deadline_s`` seconds in all (default :data:`RETRY_SECONDS`; ``attempts`` caps the tries).

    Other errors, and the last transient one, are raised unchanged. A recovered lock prints
    nothing."""
    deadline = time.monotonic() + (RETRY_SECONDS if deadline_s is None else deadline_s)
    delay, tries = 0.1, 0
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # MLflow wraps sqlite's OperationalError in several types
            tries += 1
            if not is_transient(e) or time.monotonic() + delay > deadline or (attempts and tries >= attempts):
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


class _QuietStore(logging.Filter):
    """Drops MLflow's own report of a database error (a traceback with the SQL statement):
    retry_locked retries it, and what cannot be recovered is reported in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not (msg.startswith("SQLAlchemy database error") or msg.startswith("SQLAlchemy engine could not"))


_quiet = _QuietStore()


def quiet_mlflow_logs() -> None:
    """No SQL, tracebacks or migration chatter from MLflow on stderr."""
    log = logging.getLogger("mlflow.store.db.utils")
    if _quiet not in log.filters:
        log.addFilter(_quiet)
    for name in ("alembic", "alembic.runtime.migration", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative or absolute), else None."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri[len("sqlite:///"):].split("?", 1)[0])


def artifacts_root(tracking_uri: str) -> Path | None:
    """Where ``mlflow-artifacts:/...`` of a sqlite store lie: ``mlartifacts/`` next to the database."""
    db = sqlite_path(tracking_uri)
    return None if db is None else db.parent / ARTIFACTS_DIR


def ensure_sqlite_store(tracking_uri: str, timeout: float | None = None) -> None:
    """Create the sqlite store of ``tracking_uri`` if there is none, safely.

    Under a lock file next to the database (concurrent first use waits for the first), the
    tables are made in a temporary file that is renamed into place: a creation killed half-way
    leaves no database, never a half-migrated one."""
    db = sqlite_path(tracking_uri)
    if db is None or (db.exists() and db.stat().st_size > 0):
        return
    from filelock import FileLock, Timeout

    db.parent.mkdir(parents=True, exist_ok=True)
    quiet_mlflow_logs()
    try:
        with FileLock(str(db) + ".lock", timeout=RETRY_SECONDS if timeout is None else timeout):
            if db.exists() and db.stat().st_size > 0:
                return
            fd, tmp = tempfile.mkstemp(dir=db.parent, prefix=f".{db.name}.", suffix=".creating")
            os.close(fd)
            tmp_uri = f"sqlite:///{tmp}"
            try:
                from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

                store = SqlAlchemyStore(tmp_uri, PORTABLE_ARTIFACT_ROOT)
                store.engine.dispose()
                SqlAlchemyStore._engine_map.pop(tmp_uri, None)
                os.chmod(tmp, 0o666 & ~current_umask())
                os.replace(tmp, db)
            finally:
                for leftover in (tmp, tmp + "-journal"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(leftover)
    except Timeout:
        raise TrackingError(f"MLflow store {db} is being created by another process that has held {db}.lock "
                            f"for {timeout or RETRY_SECONDS:.0f} s; check for a hung process") from None


@contextlib.contextmanager
def _http_env(**values: str):
    """MLflow's HTTP settings (MLFLOW_HTTP_REQUEST_*) for the calls inside."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def open_client(tracking_uri: str):
    """An MlflowClient of ``tracking_uri`` whose store is known to work.

    sqlite: the store is created safely (:func:`ensure_sqlite_store`) and opened with retries.
    http(s): the server must answer within seconds (MLflow's own retries are off for the
    probe), and later calls use a few short HTTP retries unless MLFLOW_HTTP_REQUEST_* say
    otherwise. Raises :class:`TrackingError`."""
    quiet_mlflow_logs()
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as e:
        raise TrackingError(f"MLflow is not installed ({e}); install it, or run with --mlflow false") from None
    scheme = urlparse(tracking_uri).scheme
    try:
        ensure_sqlite_store(tracking_uri)
        client = retry_locked(MlflowClient, tracking_uri=tracking_uri)
    except TrackingError:
        raise
    except Exception as e:
        raise TrackingError(f"cannot open the MLflow store {tracking_uri}: {short_error(e)}") from None
    if scheme in ("http", "https"):
        with _http_env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(PROBE_TIMEOUT_S)):
            try:
                client.search_experiments(max_results=1)
            except Exception as e:
                raise TrackingError(
                    f"MLflow tracking server {tracking_uri} does not answer ({short_error(e, 160)}); start it, "
                    f"point --tracking-uri (or MLFLOW_TRACKING_URI) at a running server or a sqlite:/// store, "
                    f"or run with --mlflow false") from None
        for key, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                           ("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")):
            os.environ.setdefault(key, value)
    return client


def experiment_description(name: str, pipeline_config: str | None = None) -> str:
    """The experiment's description (tag ``mlflow.note.content``, shown by the UI)."""
    where = (f"the runs of the tssm-bench pipeline config `{pipeline_config}` (one run per grid point; "
             f"`{pipeline_config} (pipeline)` holds summary.csv, summary.md and the figures)"
             if pipeline_config else "tssm-bench training runs (`tssm train`)")
    return (f"**{name}**: {where}.\n\n"
            "Each run: params = the hyperparameters the method reads; metrics per epoch (train/test accuracy "
            "and loss, objective, residuals, timings, peak memory); the dataset as input; metrics.csv and "
            "run.json as artifacts. Filter with e.g. `tags.method = \"gsadmm\" and tags.splits = \"2\"`.")


def ensure_experiment(client, tracking_uri: str, name: str, tags: dict[str, str] | None = None,
                      artifact_location: str | None = None, description: str | None = None):
    """Find or create (or restore, when deleted in the UI) the experiment ``name``.

    A new experiment of a sqlite store gets the artifact root ``mlflow-artifacts:/<id>``
    (relative to ``mlartifacts/`` next to the database), unless ``artifact_location`` says
    otherwise. Tags it with ``tags``, a description and ``mlflow.experimentKind`` (so the UI
    shows runs, not GenAI traces). Returns the experiment (raises :class:`TrackingError`).

    Idempotent under races: any number of processes may call it at once. A new experiment is
    created together with its tags (one transaction; a process that loses the creation reads
    the winner's back), and a tag set on an existing experiment survives a concurrent writer
    of the same tag (:func:`set_experiment_tag`)."""
    if not name or not name.strip():
        raise TrackingError("experiment must be a non-empty name (got an empty one): set --experiment NAME, "
                            "or run with --mlflow false to record no MLflow run")
    try:
        wanted = {"mlflow.experimentKind": "custom_model_development", **(tags or {})}
        exp = retry_locked(client.get_experiment_by_name, name)
        if exp is None:
            first = {**wanted, "mlflow.note.content": description or experiment_description(
                name, (tags or {}).get("pipeline_config"))}
            exp = _create_experiment(client, tracking_uri, name, first, artifact_location)
        if exp.lifecycle_stage == "deleted":  # deleted in the UI: bring it back rather than fail every run
            exp = _restore_experiment(client, exp.experiment_id)
        if description or "mlflow.note.content" not in exp.tags:
            wanted["mlflow.note.content"] = description or experiment_description(name, (tags or {}).get("pipeline_config"))
        changed = False
        for k, v in wanted.items():
            if exp.tags.get(k) != v:
                set_experiment_tag(client, exp.experiment_id, k, v)
                changed = True
        return retry_locked(client.get_experiment, exp.experiment_id) if changed else exp
    except TrackingError:
        raise
    except Exception as e:
        raise TrackingError(f"MLflow experiment {name!r} in {tracking_uri}: {short_error(e)}") from None


def is_lost_insert(e: BaseException) -> bool:
    """Whether ``e`` is an insert that lost a race: MLflow checks for a row, then inserts it,
    and a concurrent process inserted the same key in between (sqlite, PostgreSQL, MySQL words)."""
    text = str(e).lower()
    return any(t in text for t in ("unique constraint", "duplicate key", "duplicate entry", "already exists"))


def _create_experiment(client, tracking_uri: str, name: str, tags: dict[str, str], artifact_location: str | None):
    """Create ``name`` with ``tags`` in one transaction; when a concurrent process created it
    first, the winner's experiment."""
    try:
        if artifact_location is None and sqlite_path(tracking_uri) is not None:
            from mlflow.entities import ExperimentTag
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            store = retry_locked(SqlAlchemyStore, tracking_uri, PORTABLE_ARTIFACT_ROOT)
            retry_locked(store.create_experiment, name, tags=[ExperimentTag(k, v) for k, v in tags.items()])
        else:
            retry_locked(client.create_experiment, name, artifact_location=artifact_location, tags=tags)
    except Exception as e:
        if not is_lost_insert(e) and "RESOURCE_ALREADY_EXISTS" not in str(e):
            raise
    exp = retry_locked(client.get_experiment_by_name, name)
    if exp is None:
        raise TrackingError(f"MLflow experiment {name!r} in {tracking_uri} could not be created, nor found after "
                            f"its creation; check the store")
    return exp


def _restore_experiment(client, experiment_id: str):
    """Restore a deleted experiment; one restored by a concurrent process meanwhile is fine."""
    try:
        retry_locked(client.restore_experiment, experiment_id)
    except Exception:
        exp = retry_locked(client.get_experiment, experiment_id)
        if exp.lifecycle_stage == "deleted":
            raise
        return exp
    return retry_locked(client.get_experiment, experiment_id)


def set_experiment_tag(client, experiment_id: str, key: str, value: str, attempts: int = 5) -> None:
    """``client.set_experiment_tag``, idempotent under races.

    MLflow looks the tag up, then inserts it (or updates it); two processes that set the same
    new tag at once both look, and the second insert fails on the table's UNIQUE key. The loser
    reads the tag back: it holds ``value`` (done), or another value (set again: now an update)."""
    for attempt in range(attempts):
        try:
            retry_locked(client.set_experiment_tag, experiment_id, key, value)
            return
        except Exception as e:
            if not is_lost_insert(e) or attempt == attempts - 1:
                raise
            if retry_locked(client.get_experiment, experiment_id).tags.get(key) == value:
                return


def artifact_repository(tracking_uri: str, artifact_uri: str):
    """The artifact repository of a run's (or experiment's) ``artifact_uri``.

    ``mlflow-artifacts:/...`` needs a tracking server; with a sqlite store it is resolved here,
    against ``mlartifacts/`` next to the database (where ``mlflow server --artifacts-destination``
    finds it too)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    root = artifacts_root(tracking_uri)
    parsed = urlparse(artifact_uri)
    if root is not None and parsed.scheme == "mlflow-artifacts" and not parsed.netloc:
        from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

        return LocalArtifactRepository(str((root / parsed.path.lstrip("/")).resolve()))
    return get_artifact_repository(artifact_uri, tracking_uri=tracking_uri)


def download_artifacts(tracking_uri: str, run_id: str, path: str = "", dst: str | Path | None = None) -> str:
    """Download a run's artifact (or folder) ``path``; a sqlite store's portable artifacts
    are resolved without a server. Returns the local path."""
    client = open_client(tracking_uri)
    run = retry_locked(client.get_run, run_id)
    repo = artifact_repository(tracking_uri, run.info.artifact_uri)
    if dst is not None:
        Path(dst).mkdir(parents=True, exist_ok=True)
    return repo.download_artifacts(path, dst_path=None if dst is None else str(dst))


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


def warn(message: str) -> None:
    """One line on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- the recorder
class Recorder:
    """Writes one run's files and its MLflow run. Only the main rank creates one.

    ``connect()`` (when the run starts) opens the store and the experiment, ``start_mlflow()``
    creates (or, resuming, reopens) the run; either raises :class:`TrackingError`. Later
    failures stop the MLflow logging and close the run FAILED with the tag ``tracking_error``.

    ``log_epoch`` writes an epoch to the files; ``log_pending`` sends MLflow every epoch it does
    not hold yet (the loop calls it after the epoch's checkpoint). So a run killed between the
    two, or resumed against another store, ends with each epoch in its MLflow run exactly once.
    ``log_system_metrics`` adds MLflow's CPU/GPU/memory/disk sampling (off by default)."""

    def __init__(self, cfg: RunConfig, env: dict[str, Any], *, log_system_metrics: bool = False):
        self.cfg = cfg
        self.out = Path(cfg.out)  # made and checked when the run claims it (tssm.rundir)
        self.env = env
        self.rows: list[dict[str, float]] = []
        self.commit = git_commit()
        self.log_system_metrics = log_system_metrics
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
        c = self.cfg
        tags = source_tags("tssm train")
        tags.update({
            "dataset": c.dataset, "model": c.model, "method": c.method, "splits": str(c.splits),
            "seed": str(c.seed), "git_commit": self.commit,
            "config_hash": c.config_hash(), "out": str(self.out),
        })
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
        run = retry_locked(client.create_run, self._experiment.experiment_id, tags=tags, run_name=self.run_name())
        self._run_id, self._artifact_uri = run.info.run_id, run.info.artifact_uri
        from mlflow.entities import DatasetInput, InputTag, Param

        params = [Param(k, str(v)[:6000]) for k, v in self.cfg.hyperparameters().items()]
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
        if self._mlflow is None or self._run_id is None:
            return
        if self._monitor is not None:
            with contextlib.suppress(Exception):
                self._monitor.finish()
        for call in ((self._mlflow.set_tag, self._run_id, "failure_reason",
                      "the process ended before the run's record was written"),
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
        c = self.cfg
        name = f"{c.dataset}-{c.model}-{c.method}-n{c.splits}-seed{c.seed}"
        # the run folder's further levels (an equal-resources budget, a variant), as in tssm.layout
        extra = ([f"cores{c.tags['cores']}"] if c.tags.get("cores") else []) + [c.tags.get("variant") or ""]
        return "-".join([name, *filter(None, extra)])

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
