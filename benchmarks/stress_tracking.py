"""Stress the MLflow record: concurrent runs, some killed and resumed, on one fresh sqlite store
(not a test).

Starts ``--runs`` ``tssm train`` processes at once (different seeds and folders) plus
``--killed`` more that are SIGKILLed mid-training and then resumed with the same command, all
on a store that does not exist yet (concurrent first use is part of the stress). Then checks
with MlflowClient that every run folder has exactly one MLflow run, FINISHED, holding every
metric point of its ``metrics.csv`` once (one per epoch per metric, same values), and that
every ``run.json`` says finished (read with :func:`tssm.reporting.records.load_run`, which also checks
that metrics.csv agrees with it).

    python benchmarks/stress_tracking.py                    # 8 + 2 runs, 5 epochs, digits
    python benchmarks/stress_tracking.py --runs 4 --epochs 3

Prints a table and writes ``results/stress_tracking.csv`` (git-ignored); exits 1 on any loss.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tssm.reporting.records import load_run  # noqa: E402

EXPERIMENT = "stress"
COLUMNS = ["run", "killed_at_rows", "exit", "run_json", "csv_rows", "mlflow_runs", "mlflow_status", "metrics",
           "points_expected", "points_found", "missing", "duplicate", "differing", "result"]


def command(tmp: Path, seed: int, epochs: int, uri: str) -> list[str]:
    return [sys.executable, "-m", "tssm", "train", "--dataset", "digits", "--width", "16", "--depth", "4",
            "--method", "gsadmm", "--splits", "2", "--epochs", str(epochs), "--seed", str(seed), "--threads", "1",
            "--no-progress", "--checkpoint", "true", "--tracking-uri", uri, "--experiment", EXPERIMENT,
            "--out", str(tmp / f"seed{seed}")]


def start(cmd: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def rows(out: Path) -> int:
    try:
        return max(0, len((out / "metrics.csv").read_text().strip().splitlines()) - 1)
    except OSError:
        return 0


def kill_midway(p: subprocess.Popen, out: Path, epochs: int) -> int:
    """SIGKILL ``p`` once it has recorded at least 2 epochs (and before its last); the rows then."""
    while p.poll() is None and rows(out) < min(3, epochs):
        time.sleep(0.01)
    if p.poll() is not None:
        return -1  # finished before it could be killed
    p.send_signal(signal.SIGKILL)
    p.wait()
    return rows(out)


def check(out: Path, client, runs_by_out: dict[str, list]) -> dict[str, object]:
    """One run folder against its MLflow run(s)."""
    run = load_run(out)
    found = runs_by_out.get(str(out), [])
    row: dict[str, object] = {"run": out.name, "run_json": run.status, "csv_rows": 0 if run.metrics is None else len(run.metrics),
                              "mlflow_runs": len(found), "mlflow_status": ",".join(r.info.status for r in found)}
    expected = found_n = missing = duplicate = differing = 0
    metrics = [] if run.metrics is None else [c for c in run.metrics.columns if c != "epoch"]
    if len(found) == 1:
        rid = found[0].info.run_id
        for name in metrics:
            want = {int(e): float(v) for e, v in zip(run.metrics["epoch"], run.metrics[name])
                    if isinstance(v, (int, float)) and math.isfinite(float(v))}
            history = client.get_metric_history(rid, name)
            steps = [m.step for m in history]
            got = {m.step: m.value for m in history}
            expected += len(want)
            found_n += len(history)
            missing += len(set(want) - set(got))
            duplicate += len(steps) - len(set(steps))
            differing += sum(1 for s, v in want.items() if s in got and not math.isclose(got[s], v, rel_tol=1e-9, abs_tol=1e-12))
    row.update(metrics=len(metrics), points_expected=expected, points_found=found_n, missing=missing,
               duplicate=duplicate, differing=differing)
    ok = (run.status == "finished" and len(found) == 1 and found[0].info.status == "FINISHED" and expected > 0
          and expected == found_n and not (missing or duplicate or differing))
    row["result"] = "PASS" if ok else "FAIL"
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=8, help="runs left to finish")
    ap.add_argument("--killed", type=int, default=2, help="runs SIGKILLed midway and resumed")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--workdir", help="where the store and runs go (default: a new temporary folder, kept)")
    ap.add_argument("--out", default=str(ROOT / "results" / "stress_tracking.csv"))
    args = ap.parse_args(argv)
    tmp = Path(args.workdir or tempfile.mkdtemp(prefix="tssm-stress-"))
    uri = f"sqlite:///{tmp}/mlflow.db"
    assert not (tmp / "mlflow.db").exists(), "the store must be fresh"
    t0 = time.time()
    n = args.runs + args.killed
    procs = {s: start(command(tmp, s, args.epochs, uri)) for s in range(n)}
    killed = {s: kill_midway(procs[s], tmp / f"seed{s}", args.epochs) for s in range(args.runs, n)}
    for s in killed:  # resumed with the same command, while the others may still run
        procs[s] = start(command(tmp, s, args.epochs, uri))
    codes = {s: p.wait(timeout=1800) for s, p in procs.items()}
    errors = {s: p.stderr.read().strip() for s, p in procs.items()}
    wall = time.time() - t0

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], max_results=1000) if exp else []
    by_out: dict[str, list] = {}
    for r in runs:
        by_out.setdefault(r.data.tags.get("out", "?"), []).append(r)
    table = []
    for s in range(n):
        row = {**check(tmp / f"seed{s}", client, by_out), "killed_at_rows": killed.get(s, ""), "exit": codes[s]}
        if codes[s] != 0 or killed.get(s) == -1:
            row["result"] = "FAIL"
        table.append(row)
    stray = len(runs) - sum(len(by_out.get(str(tmp / f"seed{s}"), [])) for s in range(n))

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(table)
    print("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS))
    for row in table:
        print("| " + " | ".join(str(row[c]) for c in COLUMNS) + " |")
    failed = [r["run"] for r in table if r["result"] != "PASS"]
    points = sum(int(r["points_found"]) for r in table)
    print(f"\n{n} runs ({args.killed} killed and resumed), {args.epochs} epochs, store {uri}, {wall:.0f} s: "
          f"{len(runs)} MLflow runs, {points} metric points, {stray} stray runs; "
          + ("nothing lost" if not failed and not stray else f"FAILED: {', '.join(failed)}"))
    for s, err in errors.items():
        if err and (codes[s] != 0 or "Traceback" in err):
            print(f"seed{s} stderr: {err[-500:]}", file=sys.stderr)
    return 1 if failed or stray else 0


if __name__ == "__main__":
    sys.exit(main())
