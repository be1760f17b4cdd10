"""The Snakemake pipeline around the grid: dry runs, what Snakemake prints, and tiny runs.

What each config expands into and every refusal are tested in-process (tests/test_grid.py);
these tests check that Snakemake runs that grid.

Every Snakemake call runs in a temporary working directory (``--directory``) against the
repository's Snakefile, so tests never touch results/ or .snakemake/ of the checkout.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pandas as pd
import pytest
import yaml

from test_grid import expected_grid, tiny_config
from tssm import grid
from tssm.solvers import SOLVERS

pytestmark = pytest.mark.slow  # every test here runs Snakemake; tests/test_grid.py covers planning in-process

ROOT = Path(__file__).resolve().parent.parent
SNAKEFILE = ROOT / "Snakefile"
CONFIGS = ROOT / "config"
BIN = Path(sys.executable).parent
SNAKEMAKE = [str(BIN / "snakemake")] if (BIN / "snakemake").exists() else [sys.executable, "-m", "snakemake"]


def snakemake(workdir: Path, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Snakemake in its own process group: past ``timeout`` the whole group (its jobs too) is
    killed, so a slow machine fails the test without leaving training runs behind."""
    cmd = [*SNAKEMAKE, "--snakefile", str(SNAKEFILE), "--directory", str(workdir), *args]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=workdir,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def job_counts(out: str) -> dict[str, int]:
    """The 'Job stats' table of a (dry) run as {rule: count}."""
    counts = {}
    block = out.split("Job stats:", 1)[-1] if "Job stats:" in out else ""
    for line in block.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)\s*$", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def printed_point(out: str) -> dict:
    """The point.yaml a train job's printed shell command writes (`snakemake -p`)."""
    rest = out[out.index("printf '%s' ") + len("printf '%s' "):]
    return yaml.safe_load(shlex.split(rest)[0])


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# --------------------------------------------------------------------------- dry runs
@pytest.mark.parametrize("name, expected", [("config", 90), ("sweep", 54)])
def test_dry_run_lists_the_full_grid(tmp_path: Path, name: str, expected: int):
    cfg_file = CONFIGS / f"{name}.yaml"
    cfg = yaml.safe_load(cfg_file.read_text())
    assert len(expected_grid(cfg)) == expected
    r = snakemake(tmp_path, "-n", "--configfile", str(cfg_file))
    assert r.returncode == 0, r.stdout + r.stderr
    counts = job_counts(r.stdout + r.stderr)
    assert counts["train"] == expected
    assert counts["mlflow_experiment"] == 1 and counts["summary"] == 1 and counts["figures"] == 1
    assert counts["prepare_data"] == len({p[0] for p in expected_grid(cfg)})
    # results of different configs never collide
    assert f"results/{cfg['name']}/runs/" in r.stdout + r.stderr
    # the sweep figure only for a config with variants
    assert ("figures/sweep.png" in r.stdout) == (name == "sweep")


def test_default_config_is_used_without_configfile(tmp_path: Path):
    r = snakemake(tmp_path, "-n")
    assert r.returncode == 0, r.stderr
    assert job_counts(r.stdout + r.stderr)["train"] == 90
    assert "results/default/runs/digits/mlp/gsadmm/n10/seed2/done.json" in r.stdout
    assert "results/default/runs/digits/mlp/gsadmm/n2/seed2/cores2/done.json" in r.stdout


@pytest.mark.parametrize("method, splits, ranks, threads", [("gsadmm", 2, 2, 1), ("adam", 1, 1, 2)])
def test_default_config_runs_figure2_on_equal_resources(tmp_path: Path, method, splits, ranks, threads):
    """The default's cores2/ runs: every method gets 2 cores, the split methods as one
    torch.distributed rank per subnetwork with 1 thread, sgd/adam as one process of 2 threads;
    the serial run of the same point keeps its folder and its one thread."""
    folder = f"results/default/runs/digits/mlp/{method}/n{splits}/seed1"
    r = snakemake(tmp_path, f"{folder}/cores2/done.json", "-n", "-p")
    assert r.returncode == 0, r.stderr
    torchrun = f"torch.distributed.run --standalone --nproc-per-node {ranks} -m tssm train"
    assert (torchrun in r.stdout) == (ranks > 1)
    assert re.search(rf"\bthreads: {ranks * threads}\b", r.stdout)
    point = printed_point(r.stdout)
    assert point["threads"] == threads and point["tags"]["cores"] == "2" and point["tags"]["workers"] == str(ranks)
    assert f"logs/default/train/digits/mlp/{method}/n{splits}/seed1/cores2.log" in r.stdout
    r = snakemake(tmp_path, f"{folder}/done.json", "-n", "-p")
    assert "torch.distributed.run" not in r.stdout
    point = printed_point(r.stdout)
    assert point["threads"] == 1 and "cores" not in point["tags"]


def test_paper_config_uses_gpus_and_torchrun_for_workers(tmp_path: Path):
    target = "results/paper/runs/cifar10/resnet/gsadmm/n3/seed0/done.json"
    r = snakemake(tmp_path, target, "-n", "-p", "--configfile", str(CONFIGS / "paper.yaml"))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "torch.distributed.run --standalone --nproc-per-node 3 -m tssm train" in out
    point = printed_point(out)
    assert point["device"] == "cuda" and point["epochs"] == 500
    assert re.search(r"resources:.*gpu=3", out)
    assert "-m tssm.gpu_slots 3 -- python" in out  # its own 3 GPUs on a local multi-GPU machine
    # what the plan costs, and a warning that this machine has no GPU for it (a dry run goes on)
    err = r.stderr
    assert "plan of `paper`: 321 training jobs; 276 jobs x 1 GPU, 15 jobs x 2 GPUs" in err
    assert "GPU-hours" in err and "warning: config `paper` asks for device cuda" in err
    assert "prepare_data" in out  # the data rule runs before the fan-out
    single = "results/paper/runs/mnist/mlp/adam/n1/seed0/done.json"
    r = snakemake(tmp_path, single, "-n", "-p", "--configfile", str(CONFIGS / "paper.yaml"))
    assert "torch.distributed.run" not in r.stdout and "-m tssm train" in r.stdout
    assert re.search(r"resources:.*gpu=1", r.stdout)


def test_sweep_variants_get_their_folder_settings_and_tags(tmp_path: Path):
    """config/sweep.yaml: one variant's job, its point.yaml, tags and log (the grid itself:
    tests/test_grid.py)."""
    variant = "init_demo-rho10-scaling_sample-tau2_1"
    target = f"results/sweep/runs/fashion_mnist/mlp/gsadmm/n5/seed0/{variant}/done.json"
    r = snakemake(tmp_path, target, "-n", "-p", "--configfile", str(CONFIGS / "sweep.yaml"))
    assert r.returncode == 0, r.stderr
    out_dir = f"results/sweep/runs/fashion_mnist/mlp/gsadmm/n5/seed0/{variant}"
    assert f"train --config {out_dir}/point.yaml --out {out_dir} " in r.stdout
    # the job writes the point.yaml of the grid's point (its settings and tags: tests/test_grid.py)
    cfg = yaml.safe_load((CONFIGS / "sweep.yaml").read_text())
    want = grid.load(cfg).point("fashion_mnist", "mlp", "gsadmm", 5, 0, None, variant).point_yaml(
        config_name="sweep", data_root="data", tracking_uri=cfg["tracking_uri"], experiment=cfg["experiment"])
    assert printed_point(r.stdout) == yaml.safe_load(want)
    assert f"logs/sweep/train/fashion_mnist/mlp/gsadmm/n5/seed0/{variant}.log" in r.stdout


# --------------------------------------------------------------------------- validation
def test_config_typo_is_one_short_line_before_anything_else(tmp_path: Path):
    """A typo in a key: one line naming it, its place and the closest known name (no schema dump)."""
    cfg = tiny_config()
    cfg["experiments"][0]["seeeds"] = [1]
    r = snakemake(tmp_path, "-n", "--configfile", str(write_config(tmp_path / "bad.yaml", cfg)))
    assert r.returncode != 0
    err = r.stdout + r.stderr
    line = "Error validating config file at experiments[0]: unknown key: 'seeeds' was unexpected (did you mean 'seeds'?)"
    assert line in err, err
    assert len(err.splitlines()) < 15 and "$defs" not in err, err


def test_cuda_config_stops_early_without_a_gpu(tmp_path: Path):
    """Not a dry run, local executor, no GPU: one line before any job starts."""
    cfg = tiny_config(run={"device": "cuda"})
    env = {k: v for k, v in os.environ.items() if k not in ("TSSM_GPUS", "CUDA_VISIBLE_DEVICES")}
    r = snakemake(tmp_path, "--cores", "1", "--configfile", str(write_config(tmp_path / "cuda.yaml", cfg)), env=env)
    assert r.returncode != 0
    err = r.stdout + r.stderr
    assert "config `t` asks for device cuda and up to 1 GPU(s) per job, but this machine shows 0" in err, err
    assert "rule train" not in err and not (tmp_path / "results" / "t" / "runs").exists()


def test_schema_run_settings_match_runconfig():
    """`run:` accepts exactly the settings (common and every method's) the pipeline does not
    set itself: the schema the pipeline validates with is filled in from the declarations."""
    from tssm.config import RunConfig, pipeline_schema

    schema = pipeline_schema(yaml.safe_load((CONFIGS / "schema.yaml").read_text()))
    run_props = set(schema["$defs"]["run"]["properties"])
    pipeline = {"dataset", "model", "method", "splits", "seed", "epochs", "out", "data_root", "download",
                "tracking_uri", "experiment", "tags"}
    declared = set(RunConfig.common_keys()) | {f.name for s in SOLVERS.values() for f in fields(s.Settings)}
    assert run_props == declared - pipeline


def test_profiles_and_env_files():
    local = yaml.safe_load((ROOT / "profiles/default/config.yaml").read_text())
    assert local["cores"] == 2
    slurm = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    assert slurm["executor"] == "slurm"
    assert slurm["default-resources"]["slurm_account"] == "<ACCOUNT>"
    assert "slurm_partition" in slurm["default-resources"]
    assert slurm["set-resources"]["train"]["nodes"] == 1  # a multi-GPU run's GPUs on one node
    env = yaml.safe_load((ROOT / "envs/tssm.yaml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "torch==2.14.1" in pip and "torchvision==0.29.1" in pip


# --------------------------------------------------------------------------- end to end
E2E = {
    "name": "e2e",
    "experiment": "e2e-test",
    "run": {"width": 32, "depth": 4, "n_train": 300, "n_test": 100, "threads": 1, "checkpoint": False},
    "experiments": [
        {"name": "main", "datasets": ["digits"], "model": "mlp", "methods": ["gsadmm", "adam"], "splits": [2, 3],
         "seeds": [0], "epochs": 2},
        # an SGD step of 1e6 diverges in its first epoch: the pipeline must go on and report it
        {"name": "diverging", "datasets": ["digits"], "model": "mlp", "methods": ["sgd"], "splits": [1],
         "seeds": [0], "epochs": 2, "run": {"lr": 1.0e6}},
        # equal resources, 2 cores a run: gsadmm as 2 ranks x 1 thread (torchrun), adam 1 x 2
        {"name": "parallel", "datasets": ["digits"], "model": "mlp", "methods": ["gsadmm", "adam"], "splits": [2],
         "seeds": [0], "epochs": 2, "cores": 2},
    ],
    "figures": {"figure2_splits": [2, 3]},
}


def test_end_to_end_tiny_pipeline(tmp_path: Path):
    cfg_file = write_config(tmp_path / "e2e.yaml", E2E)
    # no venv on PATH: the rules must find their interpreter themselves
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    env.pop("MLFLOW_TRACKING_URI", None)
    # 4 jobs at once on one sqlite store: no run and no metric point may be lost
    r = snakemake(tmp_path, "--cores", "4", "--configfile", str(cfg_file), env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert "database is locked" not in r.stdout + r.stderr

    res = tmp_path / "results" / "e2e"
    points = expected_grid(E2E)
    assert len(points) == 6
    summary = pd.read_csv(res / "summary.csv")
    assert len(summary) == len(points)
    axes = summary[["dataset", "model", "method", "splits", "seed", "cores"]].astype(object)
    assert {tuple(None if v != v else v for v in x) for x in axes.itertuples(index=False)} == points
    cores = summary["cores"].map(lambda c: "" if c != c else f"@{int(c)}")
    status = dict(zip(summary["method"] + summary["splits"].astype(str) + cores, summary["status"]))
    assert status == {"gsadmm2": "finished", "gsadmm3": "finished", "adam1": "finished", "sgd1": "diverged",
                      "gsadmm2@2": "finished", "adam1@2": "finished"}
    # what each run used: the plain ones 1 x 1, the budget's 2 ranks x 1 thread and 1 x 2 threads
    used = dict(zip(summary["method"] + cores, zip(summary["workers"], summary["threads"])))
    assert used["gsadmm"] == (1, 1) and used["gsadmm@2"] == (2, 1) and used["adam@2"] == (1, 2)
    # Figure 2 is drawn from those: its bars are the budget's runs, labelled ranks x threads
    from tssm.reporting import figdata, figure2

    data = figdata.read_results(res / "summary.csv")
    fig, _ = figure2.draw_figure2(data.summary, data.curves, [2])
    bars = next(ax for ax in fig.axes if ax.get_title().startswith("(a)"))
    assert sorted(t.get_text() for t in bars.texts if t.get_text()) == ["1×2", "2×1"]
    assert "equal resources: 2 cores per run" in bars.get_title()
    assert "diverged" in (res / "summary.md").read_text()
    for stem in ("figure1_train_acc", "figure2_speed", "acc_vs_splits", "time_to_target", "speedup"):
        for ext in ("png", "pdf"):
            assert (res / "figures" / f"{stem}.{ext}").stat().st_size > 1000
    assert (tmp_path / "logs" / "e2e" / "train" / "digits" / "mlp" / "adam" / "n1" / "seed0.log").exists()

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["e2e-test"])
    runs = runs[runs["tags.tssm.kind"] != "pipeline"]  # the run `e2e (pipeline)` holds the summary and figures
    assert len(runs) == len(points)
    got = {(r["tags.dataset"], r["tags.model"], r["tags.method"], int(r["tags.splits"]), int(r["tags.seed"]),
            int(r["tags.cores"]) if isinstance(r["tags.cores"], str) else None) for _, r in runs.iterrows()}
    assert got == points
    assert set(runs["tags.pipeline_config"]) == {"e2e"}
    client = mlflow.tracking.MlflowClient()
    for _, run in runs[runs["tags.method"] != "sgd"].iterrows():  # finished runs: epochs 0, 1, 2
        assert sorted(m.step for m in client.get_metric_history(run["run_id"], "test_acc")) == [0, 1, 2]
    marker = json.loads((res / "mlflow_experiment.json").read_text())
    assert marker["experiment"] == "e2e-test"

    # the Snakemake report collects the figures with their captions
    r = snakemake(tmp_path, "--configfile", str(cfg_file), "--report", "results/e2e/report.html", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (res / "report.html").stat().st_size > 10_000

    # nothing changed: nothing to do
    r = snakemake(tmp_path, "-n", "--configfile", str(cfg_file), env=env)
    assert r.returncode == 0 and "Nothing to be done" in r.stdout + r.stderr, r.stdout + r.stderr
    # the same checkout moved elsewhere: no rule's inputs or params name its path, nothing re-runs
    # but the MLflow pipeline run (its rule takes its script as an input)
    moved = tmp_path / "moved checkout"
    moved.mkdir()
    shutil.copy(ROOT / "Snakefile", moved)
    for folder in ("workflow", "tssm", "config", "profiles", "envs"):
        shutil.copytree(ROOT / folder, moved / folder, ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([*SNAKEMAKE, "--snakefile", str(moved / "Snakefile"), "--directory", str(tmp_path), "-n",
                        "--configfile", str(cfg_file)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not {"train", "summary", "figures", "prepare_data"} & set(job_counts(r.stdout + r.stderr)), r.stdout
    # a new seed: only its runs (plus the summary and figures that read them)
    more = json.loads(json.dumps(E2E))
    more["experiments"][0]["seeds"] = [0, 1]
    r = snakemake(tmp_path, "-n", "--configfile", str(write_config(tmp_path / "more.yaml", more)), env=env)
    counts = job_counts(r.stdout + r.stderr)
    assert counts.get("train") == 3 and "mlflow_experiment" not in counts and "prepare_data" not in counts
    # a new split level: only the split methods' new runs
    more = json.loads(json.dumps(E2E))
    more["experiments"][0]["splits"] = [2, 3, 4]
    r = snakemake(tmp_path, "-n", "--configfile", str(write_config(tmp_path / "lvl.yaml", more)), env=env)
    assert job_counts(r.stdout + r.stderr).get("train") == 1
    # a changed run setting re-runs the points it touches (params trigger)
    changed = json.loads(json.dumps(E2E))
    changed["experiments"][0]["epochs"] = 3
    r = snakemake(tmp_path, "-n", "--configfile", str(write_config(tmp_path / "chg.yaml", changed)), env=env)
    out = r.stdout + r.stderr
    assert job_counts(out).get("train") == 3 and "params" in out.lower()


# ----------------------------------------------------------------------------- tuning protocol
TUNE = {
    "name": "tune",
    "run": {"width": 16, "depth": 3, "threads": 1, "val_fraction": 0.25, "n_train": 400, "n_test": 100,
            "checkpoint": False},
    "experiments": [{"name": "t", "datasets": ["digits"], "model": "mlp", "methods": ["adam", "gsadmm"],
                     "splits": [2], "seeds": [0, 1], "epochs": 2,
                     "tuning": {"trials": 2, "epochs": 1, "seed": 7,
                                "space": {"lr": [0.0003, 0.01], "rho": [1, 10], "gsadmm": {"lr": [0.01]}}}}],
    "figures": {"figure1_splits": 2, "figure2_splits": [2], "target_train_acc": 0.3},
}


def test_tuning_selects_on_validation_then_runs_every_seed_with_the_selection(tmp_path: Path):
    cfg_file = write_config(tmp_path / "tune.yaml", TUNE)
    r = snakemake(tmp_path, "--cores", "2", "--configfile", str(cfg_file))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    res = tmp_path / "results" / "tune"
    trials = sorted(p.parent.relative_to(res / "runs") for p in (res / "runs").glob("*/*/*/*/seed7/*/run.json"))
    # the same number of trials per method: adam's two lr, gsadmm's own lr with both rho
    assert [str(t) for t in trials] == ["digits/mlp/adam/n1/seed7/lr0.0003", "digits/mlp/adam/n1/seed7/lr0.01",
                                        "digits/mlp/gsadmm/n2/seed7/lr0.01-rho1", "digits/mlp/gsadmm/n2/seed7/lr0.01-rho10"]
    selection = yaml.safe_load((res / "tuned.yaml").read_text())["selection"]
    by_method = {s["method"]: s for s in selection}
    for method, n in (("adam", 1), ("gsadmm", 2)):
        runs = [json.loads(p.read_text()) for p in (res / "runs").glob(f"digits/mlp/{method}/n{n}/seed7/*/run.json")]
        best = max(runs, key=lambda j: (j["final"]["val_acc"], -runs.index(j)))
        assert by_method[method]["score"] == best["final"]["val_acc"]  # chosen on validation accuracy
        for seed in (0, 1):
            final = json.loads((res / f"runs/digits/mlp/{method}/n{n}/seed{seed}/run.json").read_text())
            assert final["config"]["preset"] == "tuned" and final["preset_values"] == by_method[method]["settings"]
            assert all(final["config"][k] == v for k, v in by_method[method]["settings"].items())
    # the summary and figures hold the final runs only; tuning.md lists every trial
    summary = pd.read_csv(res / "summary.csv")
    assert sorted(summary["seed"]) == [0, 0, 1, 1] and "Paired difference" not in (res / "summary.md").read_text()
    assert (res / "tuning.md").read_text().count("(selected)") == 2
    again = snakemake(tmp_path, "--cores", "2", "--configfile", str(cfg_file), "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


# --------------------------------------------------------------------------- the status check
def _point_done():
    import importlib.util

    spec = importlib.util.spec_from_file_location("point_done", ROOT / "workflow" / "scripts" / "point_done.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_status_check_marks_only_this_points_finished_run(tmp_path: Path):
    """done.json (the train job's output) is written only for a finished or diverged record of
    this very point.yaml; anything else leaves no marker, so the next call runs the point."""
    pd_ = _point_done()
    out = tmp_path / "run"
    out.mkdir()
    point = {"dataset": "digits", "method": "adam", "seed": 0, "epochs": 2, "experiment": "a", "tags": {"grid": "x"}}
    (out / "point.yaml").write_text(yaml.safe_dump(point))
    assert "no run.json" in pd_.problem(out)
    record = {"status": "interrupted", "reason": "stopped by signal 15", "config": {**point, "tags": {}}}
    (out / "run.json").write_text(json.dumps(record))
    assert "run status 'interrupted' (stopped by signal 15)" in pd_.problem(out)
    (out / "run.json").write_text(json.dumps({**record, "status": "finished"}))
    assert "no metrics.csv" in pd_.problem(out)
    (out / "metrics.csv").write_text("epoch\n0\n")
    assert pd_.problem(out) is None  # tags differ: labels, not settings
    assert pd_.main(["--check", str(out)]) == 0
    (out / "point.yaml").write_text(yaml.safe_dump({**point, "epochs": 3, "experiment": "b"}))
    assert pd_.problem(out).endswith("trained with other epochs")  # the experiment is an index, not a setting
    assert pd_.main([str(out), str(out / "done.json")]) == 1 and not (out / "done.json").exists()
    (out / "point.yaml").write_text(yaml.safe_dump(point))
    assert pd_.main([str(out), str(out / "done.json")]) == 0
    assert json.loads((out / "done.json").read_text())["status"] == "finished"
    # a tuned point: its record must hold what the selection chose
    tuned = {**point, "preset": "tuned", "tuned_file": str(tmp_path / "tuned.yaml"), "splits": 1, "model": "mlp"}
    (out / "point.yaml").write_text(yaml.safe_dump(tuned))
    (out / "run.json").write_text(json.dumps({**record, "status": "finished", "config": {**tuned, "lr": 0.01}}))
    assert pd_.problem(out) is not None  # no selection to compare with
    sel = {"dataset": "digits", "model": "mlp", "method": "adam", "splits": 1, "settings": {"lr": 0.01}}
    (tmp_path / "tuned.yaml").write_text(yaml.safe_dump({"selection": [sel]}))
    assert pd_.problem(out) is None
    sel["settings"]["lr"] = 0.001
    (tmp_path / "tuned.yaml").write_text(yaml.safe_dump({"selection": [sel]}))
    assert "trained with other lr" in pd_.problem(out)
