"""A pipeline config as one browsable MLflow study: a parent run per config, every training
run its child.

- :func:`open_study` (the pipeline's ``mlflow_experiment`` step, before the fan-out) finds or
  creates the parent run ``<config> (pipeline)``: the config's settings as params, the config
  YAML as the artifact ``config.yaml``, status RUNNING while the pipeline works. The training
  runs find it through ``TSSM_MLFLOW_PARENT_RUN_ID`` (:data:`tssm.tracking.recorder.PARENT_ENV`).
- A config edited since gets a new parent at the pipeline's end (params are immutable in
  MLflow; the first step does not re-run on an edit, which would hold back the new points'
  jobs): the old one is marked ``superseded_by``, deleted (restorable), and its children move
  to the new one; a run started under the old id follows ``superseded_by``.
- :func:`close_study` (the pipeline's last step) attaches summary, figures and report files,
  takes in any training run of the config that has no parent yet, and closes it FINISHED.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .recorder import source_tags
from .store import artifact_repository, artifacts_hint, retry_locked

KIND = "pipeline"
#: MLflow's limits on a param's key and value.
PARAM_KEY_MAX, PARAM_VALUE_MAX = 250, 6000


def read_config_files(paths: list[str | Path]) -> tuple[str, dict[str, Any]]:
    """The text of the pipeline's config file(s) (several: each under a ``# <path>`` line) and
    their settings (later files override earlier keys, as Snakemake merges them)."""
    import yaml

    texts = [Path(p).read_text() for p in paths]
    merged: dict[str, Any] = {}
    for t in texts:
        merged.update(yaml.safe_load(t) or {})
    text = texts[0] if len(texts) == 1 else "".join(f"# {p}\n{t}\n" for p, t in zip(paths, texts))
    return text, merged


def study_name(config_name: str) -> str:
    return f"{config_name} (pipeline)"


def config_params(config: dict[str, Any]) -> dict[str, str]:
    """The config's settings as params: nested keys dotted (``run.width``,
    ``experiments.main.methods``; an experiment by its ``name``), lists as JSON, no nulls."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
            for v in value:
                walk(f"{prefix}.{v['name']}", {k: x for k, x in v.items() if k != "name"})
        elif value is not None:
            text = value if isinstance(value, str) else json.dumps(value)
            out[prefix[:PARAM_KEY_MAX]] = text[:PARAM_VALUE_MAX]

    walk("", config)
    return out


def _study_runs(client, experiment_id: str, config_name: str) -> list:
    return retry_locked(client.search_runs, [experiment_id],
                        filter_string=f"tags.pipeline_config = '{config_name}' and tags.`tssm.kind` = '{KIND}'")


def _description(config_name: str, tracking_uri: str) -> str:
    return (f"The study of pipeline config `{config_name}`: its training runs are this run's children "
            f"(expand the row in the runs table). Params: the config's settings; artifacts: config.yaml, and when "
            f"the pipeline has finished summary.csv, summary.md, summary.html and figures/. "
            f"{artifacts_hint(tracking_uri)}")


def open_study(client, tracking_uri: str, experiment_id: str, config_name: str, config_text: str,
               config: dict[str, Any]) -> str:
    """The id of the config's parent run, made RUNNING: the one of this config text, else a
    new one (an earlier one of other text is superseded and hands over its children)."""
    digest = hashlib.sha256(config_text.encode()).hexdigest()[:16]
    existing = _study_runs(client, experiment_id, config_name)
    for run in existing:
        if run.data.tags.get("config_sha") == digest:
            if run.info.status != "RUNNING":
                retry_locked(client.update_run, run.info.run_id, status="RUNNING")
            return run.info.run_id
    from mlflow.entities import Param

    tags = {**source_tags("snakemake (tssm pipeline)"), "pipeline_config": config_name, "tssm.kind": KIND,
            "config_sha": digest, "mlflow.note.content": _description(config_name, tracking_uri)}
    run = retry_locked(client.create_run, experiment_id, tags=tags, run_name=study_name(config_name))
    parent = run.info.run_id
    params = [Param(k, v) for k, v in config_params(config).items()]
    for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
        retry_locked(client.log_batch, parent, params=params[i:i + 100])
    repo = artifact_repository(tracking_uri, run.info.artifact_uri)
    retry_locked(_log_text, repo, config_text, "config.yaml")
    for old in existing:
        supersede_study(client, experiment_id, old, parent)
    return parent


def _log_text(repo, text: str, name: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / name).write_text(text)
        repo.log_artifact(str(Path(d) / name))


def supersede_study(client, experiment_id: str, old, parent: str) -> None:
    """Move ``old``'s children to ``parent``; mark ``old`` superseded, KILLED if it was left
    RUNNING, and delete it (MLflow's soft delete: restorable from the UI's "Deleted" filter)."""
    adopt(client, experiment_id, parent, f"tags.mlflow.parentRunId = '{old.info.run_id}'")
    retry_locked(client.set_tag, old.info.run_id, "superseded_by", parent)
    if old.info.status == "RUNNING":
        retry_locked(client.set_terminated, old.info.run_id, "KILLED")
    retry_locked(client.delete_run, old.info.run_id)


def adopt(client, experiment_id: str, parent: str, filter_string: str) -> int:
    """Make every active training run matching ``filter_string`` a child of ``parent``."""
    moved, token = 0, None
    while True:
        page = retry_locked(client.search_runs, [experiment_id], filter_string=filter_string, max_results=1000,
                            page_token=token)
        for run in page:
            if run.data.tags.get("tssm.kind") == KIND:  # a parent is nobody's child
                continue
            if run.data.tags.get("mlflow.parentRunId") != parent:
                retry_locked(client.set_tag, run.info.run_id, "mlflow.parentRunId", parent)
                moved += 1
        token = page.token
        if not token:
            return moved


def close_study(client, tracking_uri: str, experiment_id: str, config_name: str, parent: str,
                files: list[Path], figures: list[Path], statuses: dict[str, int], summary_md: str | None,
                config_text: str | None = None, config: dict[str, Any] | None = None) -> dict:
    """Attach the pipeline's results to the parent run, adopt the config's training runs that
    have no other parent (trained before the study existed, without the variable, or under a
    superseded parent), close it FINISHED. A config edited since the parent was made
    (``config_text``) first gets its new parent (:func:`open_study`). Returns what it attached."""
    run = retry_locked(client.get_run, parent)
    if config_text is not None and run.data.tags.get("config_sha") != hashlib.sha256(config_text.encode()).hexdigest()[:16]:
        parent = open_study(client, tracking_uri, experiment_id, config_name, config_text, config or {})
        run = retry_locked(client.get_run, parent)
    repo = artifact_repository(tracking_uri, run.info.artifact_uri)
    for f in files:
        retry_locked(repo.log_artifact, str(f))
    for f in figures:
        retry_locked(repo.log_artifact, str(f), "figures")
    for key in ("finished", "diverged", "failed", "interrupted"):
        retry_locked(client.log_metric, parent, f"runs_{key}", float(statuses.get(key, 0)))
    adopted = adopt(client, experiment_id, parent,
                    f"tags.pipeline_config = '{config_name}'")
    if summary_md:
        note = _description(config_name, tracking_uri) + "\n\n" + summary_md
        retry_locked(client.set_tag, parent, "mlflow.note.content", note[:60000])
    retry_locked(client.set_terminated, parent, "FINISHED")
    return {"run_id": parent, "adopted": adopted,
            "artifacts": ["config.yaml", *(f.name for f in files), *(f"figures/{f.name}" for f in figures)]}
