"""Create (or find, or restore) one MLflow experiment and write a marker with its id.

The pipeline runs this once per configuration before the training jobs fan out, so that
parallel jobs find the store and the experiment instead of racing to create them. The store
is created under a lock, atomically (tssm.tracking.store.ensure_sqlite_store); every call is
retried while sqlite is locked; a concurrent creation ("already exists") is resolved by
looking up the winner. A sqlite store's new experiment keeps its artifacts under
mlflow-artifacts:/<id>, i.e. mlartifacts/<id>/ next to the database (movable with it).
Problems print one line, `error: ...`, and exit 2.
"""

from __future__ import annotations

import argparse
import sys

from tssm.files import write_marker
from tssm.tracking.experiment import ensure_experiment, experiment_description
from tssm.tracking.store import TrackingError, open_client


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--name", required=True, help="experiment name")
    p.add_argument("--tracking-uri", required=True)
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="experiment tag (repeatable)")
    p.add_argument("--artifact-location", help="artifact root of a new experiment (default: for sqlite, "
                                                "mlflow-artifacts:/<id>, stored in mlartifacts/ next to the database)")
    p.add_argument("--out", required=True, help="marker JSON to write")
    args = p.parse_args(argv)
    tags = dict(t.split("=", 1) for t in args.tag)
    try:
        client = open_client(args.tracking_uri)
        exp = ensure_experiment(client, args.tracking_uri, args.name, tags, args.artifact_location,
                                description=experiment_description(args.name, tags.get("pipeline_config")))
    except TrackingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return write_marker(args.out, {"experiment": args.name, "experiment_id": exp.experiment_id,
                                   "tracking_uri": args.tracking_uri, "artifact_location": exp.artifact_location})


if __name__ == "__main__":
    sys.exit(main())
