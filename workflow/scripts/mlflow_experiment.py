"""Create (or find, or restore) one MLflow experiment and write a marker with its id.

The pipeline runs this once per configuration before the training jobs fan out, so that
parallel jobs find the experiment instead of racing to create it. sqlite's "database is
locked" is retried (tssm.tracking.retry_locked); a concurrent creation ("already exists") is
resolved by looking up the winner.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from tssm.tracking import write_marker

from tssm.tracking import retry_locked

# MLflow calls, retried while sqlite is locked (a little longer than a run's own calls)
retry = partial(retry_locked, attempts=10)


def default_artifact_location(tracking_uri: str, name: str) -> str | None:
    """For a sqlite store, artifacts go next to the database (results/mlartifacts/<name>)
    instead of MLflow's default ./mlruns in whatever folder the job ran in."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = Path(tracking_uri[len("sqlite:///"):])
    return (db.parent / "mlartifacts" / name).resolve().as_uri()


def ensure_experiment(tracking_uri: str, name: str, tags: dict[str, str], artifact_location: str | None = None) -> dict:
    from mlflow.tracking import MlflowClient

    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = retry(client.get_experiment_by_name, name)
    created = False
    if exp is None:
        location = artifact_location or default_artifact_location(tracking_uri, name)
        try:
            retry(client.create_experiment, name, artifact_location=location, tags=tags or None)
            created = True
        except Exception as e:
            if "already exists" not in str(e).lower() and "RESOURCE_ALREADY_EXISTS" not in str(e):
                raise
        exp = retry(client.get_experiment_by_name, name)
    if exp.lifecycle_stage == "deleted":  # deleted in the UI: bring it back rather than fail every run
        retry(client.restore_experiment, exp.experiment_id)
        exp = retry(client.get_experiment, exp.experiment_id)
    for k, v in tags.items():
        retry(client.set_experiment_tag, exp.experiment_id, k, v)
    return {"experiment": name, "experiment_id": exp.experiment_id, "tracking_uri": tracking_uri,
            "created": created, "artifact_location": exp.artifact_location}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--name", required=True, help="experiment name")
    p.add_argument("--tracking-uri", required=True)
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="experiment tag (repeatable)")
    p.add_argument("--artifact-location", help="artifact root of a new experiment (default: for sqlite, "
                                                "mlartifacts/<name> next to the database)")
    p.add_argument("--out", required=True, help="marker JSON to write")
    args = p.parse_args(argv)
    tags = dict(t.split("=", 1) for t in args.tag)
    info = ensure_experiment(args.tracking_uri, args.name, tags, args.artifact_location)
    return write_marker(args.out, info)


if __name__ == "__main__":
    sys.exit(main())
