"""The train rule's status check: is a run folder's record the finished run of its point.yaml?

    point_done.py --check OUT      exit 0 if OUT/run.json is this point's finished (or diverged)
                                   run: the train job then marks it done without training again
    point_done.py OUT DONE         write DONE (the rule's only output) when it is; else one line
                                   and exit 1, so the job fails and the next call runs it again

The marker, not run.json, is what Snakemake tracks: it is written only after the run finished,
so no kill order leaves a point counted but interrupted, and Snakemake never deletes a record
(a changed setting: `tssm train --overwrite` moves the old one to OUT/.replaced/). An orphan
that finished after Snakemake died is marked done by the next call instead of trained twice.
Torch-free: it runs once per job.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml

#: A run's outcome that the summary counts (a diverged run is a result too).
DONE = ("finished", "diverged")
#: point.yaml keys that label or index a run without changing it (not compared with the record):
#: a renamed experiment or another tracking URI keeps the finished runs (docs/pipeline.md).
LABELS = ("tags", "experiment", "tracking_uri")


def problem(out: str | Path) -> str | None:
    """Why OUT's record is not its point's finished run (None if it is)."""
    out = Path(out)
    try:
        point = yaml.safe_load((out / "point.yaml").read_text()) or {}
        record = json.loads((out / "run.json").read_text())
    except FileNotFoundError as e:
        return f"{out}: no {Path(e.filename).name}"
    except (OSError, ValueError, yaml.YAMLError) as e:
        return f"{out}: unreadable record ({e.__class__.__name__})"
    status = record.get("status")
    if status not in DONE:
        return f"{out}: run status {status!r} ({record.get('reason') or 'no reason recorded'})"
    config = record.get("config") or {}
    if point.get("preset") == "tuned":  # its values come from the selection, which may have changed
        point = {**point, **_selected(point)}
    differ = sorted(k for k, v in point.items() if k not in LABELS and config.get(k) != v)
    if differ:
        return f"{out}: the record was trained with other {', '.join(differ)}"
    if not (out / "metrics.csv").is_file():
        return f"{out}: no metrics.csv"
    return None


def _selected(point: dict) -> dict:
    """The settings the tuning selected for a tuned point (what its record must hold)."""
    try:
        selection = (yaml.safe_load(Path(point["tuned_file"]).read_text()) or {}).get("selection", [])
    except (OSError, yaml.YAMLError, KeyError):
        return {"tuned_file": None}  # no readable selection: never matches a record
    where = (point["dataset"], point["model"], point["method"], int(point["splits"]))
    for s in selection:
        if (s["dataset"], s["model"], s["method"], int(s["splits"])) == where:
            return dict(s["settings"])
    return {"tuned_file": None}


def mark(out: str | Path, done: str | Path) -> None:
    """Write the marker atomically (a kill never leaves half of it)."""
    record = json.loads((Path(out) / "run.json").read_text())
    tmp = Path(f"{done}.tmp{os.getpid()}")
    tmp.write_text(json.dumps({"status": record["status"], "config_hash": record.get("config_hash"),
                               "epochs_done": record.get("epochs_done")}) + "\n")
    os.replace(tmp, done)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--check"] and len(argv) == 2:
        return 0 if problem(argv[1]) is None else 1
    if len(argv) != 2:
        print("usage: point_done.py --check OUT | point_done.py OUT DONE", file=sys.stderr)
        return 2
    why = problem(argv[0])
    if why is not None:
        print(f"error: not done: {why}", file=sys.stderr)
        return 1
    mark(*argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
