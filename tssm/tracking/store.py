"""MLflow store plumbing: opening a store or server that works, retries, artifacts.

- every store call goes through :func:`retry_locked` (sqlite's "database is locked", a busy
  server), with a bounded total wait (:data:`RETRY_SECONDS`);
- a sqlite store is created once, under a file lock next to the database, in a temporary file
  renamed into place (:func:`ensure_sqlite_store`): concurrent first use and an interrupted
  creation both leave either no database or a complete one;
- a store or server problem is a :class:`TrackingError` (``error: ...``, exit 2);
- experiments of a sqlite store keep their artifacts under ``mlflow-artifacts:/<experiment
  id>``: relative to ``mlartifacts/`` next to the database, so moving ``results/`` keeps them
  (``mlflow ui --backend-store-uri sqlite:///<dir>/mlflow.db --artifacts-destination
  <dir>/mlartifacts`` serves them; :func:`artifact_repository` resolves them without a server).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

from ..errors import TSSMError
from ..files import current_umask

DEFAULT_TRACKING_URI = "sqlite:///results/mlflow.db"

#: The longest a single MLflow call waits for a locked store or a busy server, in seconds.
RETRY_SECONDS = float(os.environ.get("TSSM_MLFLOW_RETRY_SECONDS", "60"))

#: Where a sqlite store keeps artifacts: this folder next to the database file.
ARTIFACTS_DIR = "mlartifacts"

#: The artifact root of experiments created in a sqlite store (as ``mlflow server`` does).
PORTABLE_ARTIFACT_ROOT = "mlflow-artifacts:/"

#: Seconds to wait for a tracking server's first answer.
PROBE_TIMEOUT_S = 5


class TrackingError(TSSMError):
    """The MLflow store or server cannot take the run's record."""


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


def ui_command(tracking_uri: str) -> list[str]:
    """The ``mlflow ui`` command that browses ``tracking_uri`` with its artifacts: a sqlite
    store's ``mlflow-artifacts:/`` URIs are served from ``mlartifacts/`` next to the database
    (without ``--artifacts-destination`` the UI looks in ``./mlartifacts`` of wherever it was
    started, and every artifacts list is silently empty)."""
    root = artifacts_root(tracking_uri)
    if root is None:
        return ["mlflow", "ui", "--backend-store-uri", tracking_uri]
    return ["mlflow", "ui", "--backend-store-uri", tracking_uri, "--artifacts-destination", str(root)]


def artifacts_hint(tracking_uri: str) -> str:
    """One sentence for a run's description: how to see its artifacts in the UI."""
    if artifacts_root(tracking_uri) is None:
        return ""
    return (f"No artifacts listed? They lie in `{artifacts_root(tracking_uri)}/`: start the UI with "
            f"`{' '.join(ui_command(tracking_uri))}`.")


def ensure_sqlite_store(tracking_uri: str, timeout: float | None = None) -> None:
    """Create the sqlite store of ``tracking_uri`` if there is none, safely.

    Under a lock file next to the database (concurrent first use waits for the first), the
    tables are made in a temporary file that is renamed into place: a creation killed half-way
    leaves no database, never a half-migrated one."""
    db = sqlite_path(tracking_uri)
    if db is None or (db.exists() and db.stat().st_size > 0):
        return
    from filelock import FileLock, Timeout

    try:  # filelock waits out its whole timeout on a lock file it cannot create: say why at once
        db.parent.mkdir(parents=True, exist_ok=True)
        open(str(db) + ".lock", "a").close()
    except OSError as e:
        raise TrackingError(f"cannot create the MLflow store {db}: {e.strerror or e}; point --tracking-uri at a "
                            f"writable place, or run with --mlflow false") from None
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


#: The URI schemes of MLflow's tracking stores ('': a plain path, a file store).
TRACKING_SCHEMES = ("", "file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")


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
    if scheme not in TRACKING_SCHEMES:  # MLflow itself would talk about its model registry
        raise TrackingError(f"unknown tracking URI scheme {scheme + ':'!r} in {tracking_uri!r}; MLflow stores take "
                            f"{', '.join(s + ':' for s in TRACKING_SCHEMES if s)} or a plain path; "
                            f"or run with --mlflow false")
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
