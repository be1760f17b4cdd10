"""One MLflow run per pipeline config that holds what the pipeline made of its runs:
summary.csv, summary.md and every figure as artifacts, summary.md as the run's description.

Named `<config name> (pipeline)` and tagged `pipeline_config=<name>`, `tssm.kind=pipeline`
(filter: `tags.tssm.kind = "pipeline"`). Each execution makes a new run; the older pipeline
runs of the same config get the tag `superseded_by=<new run id>`. Writes a marker JSON.
Problems print one line, `error: ...`, and exit 2 (the marker is not written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tssm.files import write_marker
from tssm.tracking.experiment import ensure_experiment
from tssm.tracking.recorder import source_tags
from tssm.tracking.store import TrackingError, artifact_repository, open_client, retry_locked, short_error


def record(tracking_uri: str, experiment: str, config_name: str, summary_csv: Path, summary_md: Path,
           figures: list[Path]) -> dict:
    import pandas as pd

    client = open_client(tracking_uri)
    exp = ensure_experiment(client, tracking_uri, experiment, {"pipeline_config": config_name})
    try:
        old = retry_locked(client.search_runs, [exp.experiment_id],
                           filter_string=f"tags.pipeline_config = '{config_name}' and tags.`tssm.kind` = 'pipeline'")
        summary = pd.read_csv(summary_csv)
        statuses = summary["status"].value_counts().to_dict() if "status" in summary else {}
        tags = {**source_tags("snakemake (tssm pipeline)"), "pipeline_config": config_name, "tssm.kind": "pipeline",
                "runs": str(len(summary)), "mlflow.note.content": summary_md.read_text()[:60000]}
        run = retry_locked(client.create_run, exp.experiment_id, tags=tags, run_name=f"{config_name} (pipeline)")
        run_id = run.info.run_id
        try:
            for key in ("finished", "diverged", "failed", "interrupted"):
                retry_locked(client.log_metric, run_id, f"runs_{key}", float(statuses.get(key, 0)))
            repo = artifact_repository(tracking_uri, run.info.artifact_uri)
            retry_locked(repo.log_artifact, str(summary_csv))
            retry_locked(repo.log_artifact, str(summary_md))
            for fig in figures:
                retry_locked(repo.log_artifact, str(fig), "figures")
        except Exception as e:  # never leave it RUNNING
            try:
                client.set_tag(run_id, "tracking_error", short_error(e))
                client.set_terminated(run_id, "FAILED")
            finally:
                raise TrackingError(f"pipeline run of {config_name!r}: {short_error(e)}") from None
        retry_locked(client.set_terminated, run_id, "FINISHED")
        for prev in old:
            retry_locked(client.set_tag, prev.info.run_id, "superseded_by", run_id)
    except TrackingError:
        raise
    except Exception as e:
        raise TrackingError(f"pipeline run of {config_name!r} in {tracking_uri}: {short_error(e)}") from None
    return {"experiment": experiment, "experiment_id": exp.experiment_id, "run_id": run_id,
            "run_name": f"{config_name} (pipeline)", "tracking_uri": tracking_uri,
            "artifacts": [summary_csv.name, summary_md.name] + [f"figures/{f.name}" for f in figures]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--experiment", required=True)
    p.add_argument("--tracking-uri", required=True)
    p.add_argument("--config-name", required=True)
    p.add_argument("--summary-csv", required=True, type=Path)
    p.add_argument("--summary-md", required=True, type=Path)
    p.add_argument("--figures", nargs="*", default=[], type=Path)
    p.add_argument("--out", required=True, help="marker JSON to write")
    args = p.parse_args(argv)
    try:
        info = record(args.tracking_uri, args.experiment, args.config_name, args.summary_csv, args.summary_md,
                      args.figures)
    except TrackingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return write_marker(args.out, info)


if __name__ == "__main__":
    sys.exit(main())
