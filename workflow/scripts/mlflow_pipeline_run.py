"""The pipeline's last MLflow step: the config's study run (made before the fan-out by
mlflow_experiment.py) gets summary.csv, summary.md, summary.html, the figures (under
figures/) and any further report files as artifacts, summary.md in its description and the
run counts as metrics; training runs of the config without a parent are adopted; the study
run is closed FINISHED (tssm.tracking.study.close_study); a config edited since the study run was
made gets a new one that takes over the children. Writes a marker JSON. Problems print
one line, `error: ...`, and exit 2 (the marker is not written).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tssm.files import write_marker
from tssm.tracking.store import TrackingError, open_client, short_error
from tssm.tracking.study import close_study, read_config_files, study_name


def record(tracking_uri: str, experiment_marker: Path, config_name: str, summary_csv: Path, summary_md: Path,
           files: list[Path], figures: list[Path], config_files: list[Path]) -> dict:
    import pandas as pd

    marker = json.loads(experiment_marker.read_text())
    parent = marker.get("parent_run_id")
    if not parent:
        raise TrackingError(f"{experiment_marker} names no study run (made by an older version): delete it and "
                            f"run snakemake again")
    client = open_client(tracking_uri)
    summary = pd.read_csv(summary_csv)
    statuses = summary["status"].value_counts().to_dict() if "status" in summary else {}
    try:
        text, config = read_config_files(config_files) if config_files else (None, None)
        info = close_study(client, tracking_uri, marker["experiment_id"], config_name, parent,
                           [summary_csv, summary_md, *files], figures, statuses, summary_md.read_text(), text, config)
    except Exception as e:
        raise TrackingError(f"study run of {config_name!r} in {tracking_uri}: {short_error(e)}") from None
    return {"experiment": marker["experiment"], "experiment_id": marker["experiment_id"],
            "run_name": study_name(config_name), "tracking_uri": tracking_uri, "runs": len(summary), **info}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tracking-uri", required=True)
    p.add_argument("--experiment-marker", required=True, type=Path, help="mlflow_experiment.py's marker")
    p.add_argument("--config-name", required=True)
    p.add_argument("--summary-csv", required=True, type=Path)
    p.add_argument("--summary-md", required=True, type=Path)
    p.add_argument("--files", nargs="*", default=[], type=Path, help="further report files (summary.html, ...)")
    p.add_argument("--figures", nargs="*", default=[], type=Path)
    p.add_argument("--config-files", nargs="*", default=[], type=Path,
                   help="the pipeline's config file(s): an edited config gets a new study run")
    p.add_argument("--out", required=True, help="marker JSON to write")
    args = p.parse_args(argv)
    try:
        info = record(args.tracking_uri, args.experiment_marker, args.config_name, args.summary_csv,
                      args.summary_md, args.files, args.figures, args.config_files)
    except TrackingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return write_marker(args.out, info)


if __name__ == "__main__":
    sys.exit(main())
