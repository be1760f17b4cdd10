"""The MLflow experiment: found, created or restored, and tagged, by any number of processes at once."""

from __future__ import annotations

from .store import PORTABLE_ARTIFACT_ROOT, TrackingError, retry_locked, short_error, sqlite_path


def experiment_description(name: str, pipeline_config: str | None = None) -> str:
    """The experiment's description (tag ``mlflow.note.content``, shown by the UI)."""
    where = (f"the runs of the tssm-bench pipeline config `{pipeline_config}`: the parent run "
             f"`{pipeline_config} (pipeline)` holds the config (params, config.yaml) and, once the pipeline "
             f"has finished, summary.csv, summary.md and the figures; expand it for its training runs, "
             f"one per grid point" if pipeline_config else "tssm-bench training runs (`tssm train`)")
    return (f"**{name}**: {where}.\n\n"
            "Each training run: params = the settings its method and model read; metrics per epoch (train/test "
            "accuracy and loss, objective, residuals, timings, peak memory); the dataset as input; metrics.csv and "
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
