"""Before the fan-out: the config's MLflow experiment and its study run (the parent of every
training run), and a marker with both ids.

The store is created under a lock, atomically (tssm.tracking.store.ensure_sqlite_store); the
experiment is found or created idempotently (any number of processes at once); the study run
`<config> (pipeline)` holds the config's settings as params and its YAML as `config.yaml`
(tssm.tracking.study.open_study). `--parent-out` gets the study run's id alone, which the train
rule passes to `tssm train` as TSSM_MLFLOW_PARENT_RUN_ID. Problems print one line,
`error: ...`, and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tssm.files import atomic_write_text, write_marker
from tssm.tracking.experiment import ensure_experiment, experiment_description
from tssm.tracking.store import TrackingError, open_client, short_error
from tssm.tracking.study import open_study, read_config_files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--name", required=True, help="experiment name")
    p.add_argument("--tracking-uri", required=True)
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="experiment tag (repeatable)")
    p.add_argument("--artifact-location", help="artifact root of a new experiment (default: for sqlite, "
                                                "mlflow-artifacts:/<id>, stored in mlartifacts/ next to the database)")
    p.add_argument("--config-files", nargs="*", default=[], metavar="FILE",
                   help="the pipeline's config file(s): makes the study run (needs the tag pipeline_config=NAME)")
    p.add_argument("--parent-out", help="file to write the study run's id into")
    p.add_argument("--out", required=True, help="marker JSON to write")
    args = p.parse_args(argv)
    tags = dict(t.split("=", 1) for t in args.tag)
    name = tags.get("pipeline_config")
    if args.config_files and not name:
        print("error: --config-files needs --tag pipeline_config=NAME (the study run's name)", file=sys.stderr)
        return 2
    try:
        client = open_client(args.tracking_uri)
        exp = ensure_experiment(client, args.tracking_uri, args.name, tags, args.artifact_location,
                                description=experiment_description(args.name, name))
        parent = None
        if args.config_files:
            try:
                text, config = read_config_files(args.config_files)
                parent = open_study(client, args.tracking_uri, exp.experiment_id, name, text, config)
            except Exception as e:
                raise TrackingError(f"study run of {name!r} in {args.tracking_uri}: {short_error(e)}") from None
    except TrackingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.parent_out:
        atomic_write_text(Path(args.parent_out), (parent or "") + "\n")
    return write_marker(args.out, {"experiment": args.name, "experiment_id": exp.experiment_id,
                                   "tracking_uri": args.tracking_uri, "artifact_location": exp.artifact_location,
                                   "parent_run_id": parent})


if __name__ == "__main__":
    sys.exit(main())
