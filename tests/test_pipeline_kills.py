"""The pipeline's record under kills and config edits (slow: real Snakemake runs of a tiny
digits config).

After any kill (SIGKILL, SIGTERM or SIGINT to Snakemake, to its process group or to one
training job), the next `snakemake` call must finish the grid: every point has one finished
run folder, the summary has one row per point, MLflow one FINISHED training run per point.
``python tests/test_pipeline_kills.py`` prints the table docs/pipeline.md shows.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SNAKEMAKE = [str(BIN / "snakemake")] if (BIN / "snakemake").exists() else [sys.executable, "-m", "snakemake"]

TINY = {
    "name": "k",
    "experiment": "k-a",
    "run": {"width": 32, "depth": 4, "n_train": 600, "n_test": 100, "threads": 1, "checkpoint": True},
    "experiments": [{"name": "main", "datasets": ["digits"], "model": "mlp", "methods": ["gsadmm", "adam"],
                     "splits": [2], "seeds": [0, 1], "epochs": 40}],
    "figures": {"figure2_splits": [2], "target_train_acc": 0.5},
}
POINTS = {f"{m}/n{n}/seed{s}" for m, n in (("gsadmm", 2), ("adam", 1)) for s in (0, 1)}


def call(workdir: Path, cfg: dict, *args: str, popen: bool = False):
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = [*SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir), "--cores", "2",
           "--configfile", str(path), *args]
    if popen:  # its own process group, as a terminal or a service manager starts it
        return subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=900)


def train_jobs(out: str) -> int:
    for line in out.split("Job stats:", 1)[-1].splitlines():
        parts = line.split()
        if parts[:1] == ["train"]:
            return int(parts[1])
    return 0


def _training_pids(root_pid: int) -> list[int]:
    """The `tssm train` processes below our Snakemake (never anything else)."""
    import psutil

    try:
        procs = psutil.Process(root_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for proc in procs:
        try:
            cmd = proc.cmdline()
        except psutil.Error:  # ended meanwhile (or a zombie)
            continue
        if "tssm" in " ".join(cmd) and "train" in cmd:
            found.append(proc.pid)
    return found


def _wait_for_orphans(workdir: Path, timeout: float = 600) -> int:
    """Jobs a killed Snakemake left running in ``workdir`` go on to their end: wait for them
    (as a user would before calling again) and say how many there were."""
    import psutil

    def alive() -> list:
        found = []
        for proc in psutil.process_iter(["cwd", "cmdline"]):
            try:
                if proc.info["cwd"] == str(workdir) and "tssm" in " ".join(proc.info["cmdline"] or []):
                    found.append(proc)
            except (psutil.Error, TypeError):
                continue
        return found

    first = len(alive())
    t0 = time.time()
    while alive() and time.time() - t0 < timeout:
        time.sleep(0.5)
    return first


def state(workdir: Path) -> dict:
    """What is on disk and in MLflow: per point its status, marker, replaced records, and
    MLflow training runs by status."""
    import mlflow

    runs = workdir / "results" / "k" / "runs" / "digits" / "mlp"
    out = {}
    for point in sorted(POINTS):
        d = runs / point
        rj = d / "run.json"
        out[point] = {"status": json.loads(rj.read_text())["status"] if rj.exists() else None,
                      "done": (d / "done.json").exists(),
                      "replaced": len(list((d / ".replaced").glob("*"))) if (d / ".replaced").exists() else 0}
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'results' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("k-a")
    mlruns = client.search_runs([exp.experiment_id]) if exp else []
    for r in mlruns:
        if r.data.tags.get("tssm.kind") == "pipeline" or "method" not in r.data.tags:
            continue
        t = r.data.tags
        key = f"{t['method']}/n{t['splits']}/seed{t['seed']}"
        if key in out:
            out[key].setdefault("mlflow", []).append(r.info.status)
    summary = workdir / "results" / "k" / "summary.csv"
    rows = len(summary.read_text().strip().splitlines()) - 1 if summary.exists() else 0
    return {"points": out, "summary_rows": rows}


def kill_then_rerun(workdir: Path, signum: int, target: str, after_s: float = 8.0) -> dict:
    """Start the pipeline, send ``signum`` to ``target`` (snakemake, group, job) once a run
    has trained for ``after_s`` seconds, wait for it to end, then call Snakemake again."""
    p = call(workdir, TINY, popen=True)
    t0, jobs = time.time(), []
    while time.time() - t0 < 300 and p.poll() is None:
        jobs = _training_pids(p.pid)
        if jobs:
            break
        time.sleep(0.2)
    assert jobs, "no training job started"
    time.sleep(after_s)
    if target == "snakemake":
        os.kill(p.pid, signum)
    elif target == "group":
        os.killpg(p.pid, signum)
    else:
        jobs = _training_pids(p.pid) or jobs
        os.kill(jobs[0], signum)
    try:
        first = p.communicate(timeout=300)[0]
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        first = p.communicate()[0]
    orphans = _wait_for_orphans(workdir)
    between = state(workdir)
    second = call(workdir, TINY)
    unlocked = "cannot be locked" in second.stdout + second.stderr
    if unlocked:  # a SIGKILLed Snakemake leaves its lock: Snakemake asks for --unlock, as a user would do
        call(workdir, TINY, "--unlock")
        second = call(workdir, TINY)
    after = state(workdir)
    third = call(workdir, TINY, "-n")
    return {"first_rc": p.returncode, "orphans": orphans, "between": between, "second_rc": second.returncode,
            "second_train_jobs": train_jobs(second.stdout + second.stderr), "after": after, "unlocked": unlocked,
            "third": "Nothing to be done" in third.stdout + third.stderr,
            "log": (first[-1500:], second.stdout[-1500:] + second.stderr[-1500:])}


def _holds(r: dict) -> bool:
    """Every point finished, marked done, one summary row and one FINISHED MLflow run each;
    then nothing to do."""
    points = r["after"]["points"].values()
    return (r["second_rc"] == 0 and r["third"] and r["after"]["summary_rows"] == len(POINTS)
            and all(v["status"] == "finished" and v["done"] and v.get("mlflow", []).count("FINISHED") == 1
                    for v in points))


VARIANTS = [(s, t) for t in ("snakemake", "group", "job") for s in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)]


@pytest.mark.slow
@pytest.mark.parametrize("signum, target", VARIANTS, ids=[f"{s.name}-{t}" for s, t in VARIANTS])
def test_a_kill_never_leaves_a_point_counted_or_stranded(tmp_path: Path, signum, target):
    r = kill_then_rerun(tmp_path, signum, target)
    after = r["after"]
    assert r["second_rc"] == 0, r["log"]
    for point, s in after["points"].items():
        assert s["status"] == "finished" and s["done"], (point, s, r["log"])
        assert s.get("mlflow", []).count("FINISHED") == 1, (point, s)  # one FINISHED MLflow run per point
    assert after["summary_rows"] == len(POINTS)
    assert r["third"]  # and then nothing to do


@pytest.mark.slow
def test_config_edited_four_ways_does_what_a_user_expects(tmp_path: Path):
    """A seed added, a setting changed, the experiment renamed with a seed added, the
    tracking URI changed: each call runs what it must, keeps the rest, moves replaced records
    aside."""
    cfg = json.loads(json.dumps(TINY))
    cfg["run"].update(checkpoint=False, n_train=200)
    cfg["experiments"][0].update(epochs=2, seeds=[0])
    assert call(tmp_path, cfg).returncode == 0
    runs = tmp_path / "results" / "k" / "runs" / "digits" / "mlp"
    first_ids = {p: json.loads((runs / p / "run.json").read_text())["mlflow_run_id"]
                 for p in ("gsadmm/n2/seed0", "adam/n1/seed0")}
    # 1. a seed added: its two runs only
    cfg["experiments"][0]["seeds"] = [0, 1]
    r = call(tmp_path, cfg)
    assert r.returncode == 0 and train_jobs(r.stdout + r.stderr) == 2
    # 2. a setting only gsadmm reads: gsadmm's two points again, the old records in .replaced/
    cfg["run"]["rho"] = 10
    r = call(tmp_path, cfg)
    assert r.returncode == 0 and train_jobs(r.stdout + r.stderr) == 2
    assert all(len(list((runs / f"gsadmm/n2/seed{s}/.replaced").glob("*/run.json"))) == 1 for s in (0, 1))
    assert not (runs / "adam/n1/seed0/.replaced").exists()
    assert json.loads((runs / "adam/n1/seed0/run.json").read_text())["mlflow_run_id"] == first_ids["adam/n1/seed0"]
    # 3. the experiment renamed and a seed added in one edit: the new seed runs in this call;
    #    the finished points are checked and kept, not trained again
    cfg["experiment"] = "k-b"
    cfg["experiments"][0]["seeds"] = [0, 1, 2]
    r = call(tmp_path, cfg)
    assert r.returncode == 0, r.stderr[-2000:]
    assert all((runs / p / "done.json").exists() for p in ("gsadmm/n2/seed2", "adam/n1/seed2"))
    assert json.loads((runs / "adam/n1/seed2/run.json").read_text())["config"]["experiment"] == "k-b"
    assert json.loads((runs / "adam/n1/seed0/run.json").read_text())["mlflow_run_id"] == first_ids["adam/n1/seed0"]
    assert not (runs / "adam/n1/seed0/.replaced").exists()
    # 4. another tracking URI: nothing is trained again
    cfg["tracking_uri"] = f"sqlite:///{tmp_path / 'other.db'}"
    r = call(tmp_path, cfg)
    assert r.returncode == 0
    assert all(json.loads((runs / p / "run.json").read_text())["status"] == "finished"
               for p in ("adam/n1/seed0", "gsadmm/n2/seed1"))
    assert not (runs / "adam/n1/seed0/.replaced").exists()
    assert "Nothing to be done" in call(tmp_path, cfg, "-n").stdout
    summary = (tmp_path / "results" / "k" / "summary.csv").read_text().strip().splitlines()
    assert len(summary) - 1 == 6


def main() -> int:
    """The kill table of docs/pipeline.md (one fresh folder per variant)."""
    import tempfile

    print("| signal | sent to | 1st call exit | orphan processes | then: points finished / marked done | 2nd call: "
          "train jobs, exit | after it: finished, done, summary rows, FINISHED MLflow runs (duplicates) | |")
    print("|---|---|---:|---:|---|---|---|---|")
    only = sys.argv[1:]  # e.g. SIGKILL-snakemake: those variants only
    for signum, target in VARIANTS:
        if only and f"{signum.name}-{target}" not in only:
            continue
        with tempfile.TemporaryDirectory(prefix="tssm-kill-") as tmp:
            r = kill_then_rerun(Path(tmp), signum, target)
        b, a = r["between"]["points"], r["after"]["points"]
        fin = lambda s: sum(v["status"] == "finished" for v in s.values())  # noqa: E731
        done = lambda s: sum(v["done"] for v in s.values())  # noqa: E731
        ml = sum(v.get("mlflow", []).count("FINISHED") for v in a.values())
        dup = sum(max(0, v.get("mlflow", []).count("FINISHED") - 1) for v in a.values())
        print(f"| {signum.name} | {target} | {r['first_rc']} | {r['orphans']} | {fin(b)} / {done(b)} of {len(b)} | "
              f"{'(after --unlock) ' if r['unlocked'] else ''}{r['second_train_jobs']}, exit {r['second_rc']} | {fin(a)}, {done(a)}, {r['after']['summary_rows']}, "
              f"{ml} ({dup}){'' if r['third'] else ' (3rd call not empty)'} | {'PASS' if _holds(r) else 'FAIL'} |",
              flush=True)
        if not _holds(r):
            print(f"--- {signum.name} to {target}:\n{r['log'][0]}\n--- next call:\n{r['log'][1]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
