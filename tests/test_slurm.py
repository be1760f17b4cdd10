"""The cluster path, run on a throwaway single-node SLURM cluster (workflow/scripts/local_slurm.sh):
the pipeline through profiles/slurm with a 2-rank job, `srun --ntasks 2 tssm train` against the
serial run, and preemption (a requeued job resumes from its checkpoint; a cancelled job fails
and the rest of the grid goes on). Plus, without SLURM: the SLURM -> torch.distributed variable
mapping, the backend choice it drives, and the profile's status command and placeholders.

The cluster tests skip where SLURM is not installed and cannot be (no root or no apt-get);
the daemons are stopped in the fixture's teardown.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from tssm.config import RunConfig
from tssm.run import train

pytestmark = pytest.mark.slow  # a local SLURM cluster

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "workflow" / "scripts" / "local_slurm.sh"
BIN = Path(sys.executable).parent
SNAKEMAKE = [str(BIN / "snakemake")] if (BIN / "snakemake").exists() else [sys.executable, "-m", "snakemake"]
COLS = ["train_loss", "train_acc", "test_loss", "test_acc", "objective", "residual", "fit_1", "move_1", "move_2"]
HAS_PLUGIN = importlib.util.find_spec("snakemake_executor_plugin_slurm") is not None
ETC_CONF = Path("/etc/slurm/slurm.conf")


def max_rel_diff(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """Largest relative difference over the loss/accuracy/objective columns both frames have."""
    cols = [c for c in COLS if c in a and c in b]
    assert cols and len(a) == len(b), (list(a.columns), len(a), len(b))
    return float(((a[cols] - b[cols]).abs() / a[cols].abs().clip(lower=1e-8)).max().max())


# --------------------------------------------------------------------------- no cluster needed
def _slurm_env(**kw) -> dict:
    """The environment of a task of an ``srun`` step (SLURM_STEP_ID 0 unless given; None drops it)."""
    kw = {"SLURM_STEP_ID": 0, **kw}
    return {"PATH": os.environ.get("PATH", ""), **{k: str(v) for k, v in kw.items() if v is not None}}


@pytest.mark.parametrize("step", [None, "4294967294", "batch", "4294967291", "4294967295"])
def test_no_mapping_outside_an_srun_step(monkeypatch, step):
    """`python -m tssm train` in the batch script of an `--ntasks=4` job (or in an salloc
    shell) runs alone: SLURM_PROCID/SLURM_NTASKS describe the allocation, not ranks."""
    from tssm import parallel

    fake = _slurm_env(SLURM_PROCID=0, SLURM_NTASKS=4, SLURM_STEP_ID=step, SLURM_JOB_ID=123)
    monkeypatch.setattr(os, "environ", fake)
    parallel.slurm_to_torchrun_env()
    assert not {"RANK", "WORLD_SIZE", "MASTER_PORT"} & set(fake)


def test_master_port_from_the_job_id(monkeypatch):
    from tssm import parallel

    ports = []
    for job in ("123", "20123", "777777"):
        fake = _slurm_env(SLURM_PROCID=0, SLURM_NTASKS=2, SLURM_JOB_ID=job, SLURM_STEP_NUM_NODES=1)
        monkeypatch.setattr(os, "environ", fake)
        parallel.slurm_to_torchrun_env()
        ports.append(int(fake["MASTER_PORT"]))
        assert fake["MASTER_ADDR"] == "127.0.0.1"  # a one-node step rendezvouses on its node
    assert ports == [20123, 20123, 37777] and all(1024 < p < 65536 for p in ports)
    fake = _slurm_env(SLURM_PROCID=0, SLURM_NTASKS=2, SLURM_JOB_ID="5", MASTER_PORT="4000", SLURM_STEP_NUM_NODES=2)
    monkeypatch.setattr(os, "environ", fake)
    parallel.slurm_to_torchrun_env()
    assert fake["MASTER_PORT"] == "4000" and "MASTER_ADDR" not in fake  # what the user set wins


@pytest.mark.parametrize("answers, expected", [([True, True, True], "nccl"), ([True, False, True], "gloo"),
                                               ([False, False], "gloo")])
def test_ranks_agree_on_the_backend(answers, expected):
    """Uneven nodes (one rank would have to share a GPU) give every rank gloo, not a mix."""
    import threading

    import torch.distributed as dist
    from tssm import parallel

    store, got = dist.HashStore(), {}

    def rank_main(r):
        got[r] = parallel.agree_on_backend(store, r, len(answers), answers[r])

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(len(answers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert got == {r: expected for r in range(len(answers))}


def test_threads_follow_the_cpu_affinity(monkeypatch):
    from tssm import parallel

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "environ", {"LOCAL_WORLD_SIZE": "2"})
    assert parallel.local_threads(4) == 4  # 8 cores given by SLURM, 2 ranks on this node
    monkeypatch.setattr(os, "environ", {})
    assert parallel.local_threads(3) == 2 and parallel.local_threads(16) == 1


@pytest.mark.parametrize("env, expected", [
    # 2 nodes x 1 task (one GPU each): one rank on this node, so NCCL applies
    (dict(SLURM_PROCID=1, SLURM_NTASKS=2, SLURM_LOCALID=0, SLURM_NODEID=1, SLURM_STEP_TASKS_PER_NODE="1(x2)",
          SLURM_TASKS_PER_NODE="1(x2)"), dict(RANK="1", WORLD_SIZE="2", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")),
    # 1 node x 2 tasks
    (dict(SLURM_PROCID=1, SLURM_NTASKS=2, SLURM_LOCALID=1, SLURM_NODEID=0, SLURM_STEP_TASKS_PER_NODE="2"),
     dict(RANK="1", WORLD_SIZE="2", LOCAL_RANK="1", LOCAL_WORLD_SIZE="2")),
    # uneven: three nodes with 2 tasks, then one with 1; this task is on the last node
    (dict(SLURM_PROCID=6, SLURM_NTASKS=7, SLURM_LOCALID=0, SLURM_NODEID=3, SLURM_STEP_TASKS_PER_NODE="2(x3),1"),
     dict(RANK="6", WORLD_SIZE="7", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")),
    (dict(SLURM_PROCID=3, SLURM_NTASKS=7, SLURM_LOCALID=1, SLURM_NODEID=1, SLURM_STEP_TASKS_PER_NODE="2(x3),1"),
     dict(RANK="3", WORLD_SIZE="7", LOCAL_RANK="1", LOCAL_WORLD_SIZE="2")),
    # the step's counts win over the job's (srun --ntasks 2 inside a 4-task allocation)
    (dict(SLURM_PROCID=0, SLURM_NTASKS=2, SLURM_STEP_NUM_TASKS=2, SLURM_LOCALID=0, SLURM_NODEID=0,
          SLURM_STEP_TASKS_PER_NODE="2", SLURM_TASKS_PER_NODE="4"), dict(WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")),
    # only the job's list, or only --ntasks-per-node
    (dict(SLURM_PROCID=2, SLURM_NTASKS=4, SLURM_LOCALID=0, SLURM_NODEID=1, SLURM_TASKS_PER_NODE="2(x2)"),
     dict(LOCAL_WORLD_SIZE="2")),
    (dict(SLURM_PROCID=0, SLURM_NTASKS=3, SLURM_NODEID=0, SLURM_NTASKS_PER_NODE=3), dict(LOCAL_WORLD_SIZE="3")),
    # nothing to tell: LOCAL_WORLD_SIZE stays unset (init_distributed then assumes one node)
    (dict(SLURM_PROCID=0, SLURM_NTASKS=2), dict(RANK="0", LOCAL_RANK="0", LOCAL_WORLD_SIZE=None)),
    # under torchrun (RANK set) SLURM's variables are ignored
    (dict(RANK=0, WORLD_SIZE=4, LOCAL_WORLD_SIZE=4, SLURM_PROCID=1, SLURM_NTASKS=2, SLURM_STEP_TASKS_PER_NODE="1(x2)"),
     dict(RANK="0", WORLD_SIZE="4", LOCAL_WORLD_SIZE="4")),
])
def test_slurm_variables_map_to_torchrun_ones(monkeypatch, env, expected):
    from tssm import parallel

    fake = _slurm_env(**env)
    monkeypatch.setattr(os, "environ", fake)
    parallel.slurm_to_torchrun_env()
    for key, value in expected.items():
        assert fake.get(key) == value, (key, fake)


@pytest.mark.parametrize("env, gpus, device, backend, dev", [
    # 2 nodes x 1 GPU, one task each: NCCL (this was gloo while LOCAL_WORLD_SIZE was unset)
    (dict(SLURM_PROCID=1, SLURM_NTASKS=2, SLURM_LOCALID=0, SLURM_NODEID=1, SLURM_STEP_TASKS_PER_NODE="1(x2)"),
     1, "cuda", "nccl", "cuda:0"),
    # 2 tasks on one node with one GPU: they share it, messages go through gloo
    (dict(SLURM_PROCID=1, SLURM_NTASKS=2, SLURM_LOCALID=1, SLURM_NODEID=0, SLURM_STEP_TASKS_PER_NODE="2"),
     1, "cuda", "gloo", "cuda:0"),
    # 2 tasks, 2 GPUs on one node: a GPU each (local rank 1 -> cuda:1)
    (dict(SLURM_PROCID=1, SLURM_NTASKS=2, SLURM_LOCALID=1, SLURM_NODEID=0, SLURM_STEP_TASKS_PER_NODE="2"),
     2, "cuda", "nccl", "cuda:1"),
    # CPU: gloo
    (dict(SLURM_PROCID=1, SLURM_NTASKS=2, SLURM_LOCALID=0, SLURM_NODEID=1, SLURM_STEP_TASKS_PER_NODE="1(x2)"),
     0, "cpu", "gloo", "cpu"),
])
def test_backend_and_device_under_srun(monkeypatch, env, gpus, device, backend, dev):
    """init_distributed's choice from SLURM's variables, with CUDA and the process group faked."""
    from tssm import parallel

    monkeypatch.setattr(os, "environ", _slurm_env(**env))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: None)
    seen = {}
    store = parallel.dist.HashStore()
    for r in range(int(env["SLURM_NTASKS"])):  # the other ranks could each have a GPU of their own
        store.set(f"tssm/0/nccl_ok/{r}", "1")
    monkeypatch.setattr(parallel.dist, "rendezvous", lambda url, rank, world, **kw: iter([(store, rank, world)]))
    monkeypatch.setattr(parallel.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(parallel.dist, "init_process_group", lambda b, **kw: seen.setdefault("backend", b))
    monkeypatch.setattr(parallel.dist, "get_backend", lambda: seen["backend"])
    monkeypatch.setattr(parallel.dist, "get_world_size", lambda: int(env["SLURM_NTASKS"]))
    rank, world, d, comm = parallel.init_distributed(device, 5.0)
    assert (rank, world) == (int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]))
    assert seen["backend"] == backend
    assert str(d) == dev
    assert comm.type == ("cuda" if backend == "nccl" else "cpu")


def _profile(path_dir: Path) -> dict:
    """profiles/slurm/config.yaml as Snakemake reads it (YTE), with PATH = path_dir."""
    import yte

    old = os.environ["PATH"]
    os.environ["PATH"] = str(path_dir)
    try:
        with open(ROOT / "profiles" / "slurm" / "config.yaml") as f:
            return yte.process_yaml(f, require_use_yte=True)
    finally:
        os.environ["PATH"] = old


@pytest.mark.parametrize("storage, expected", [
    ("accounting_storage/slurmdbd", "sacct"),
    ("accounting_storage/none", "squeue"),
    (None, "squeue"),  # no scontrol here at all
])
def test_profile_picks_the_status_command(tmp_path, storage, expected):
    """sacct only where the cluster keeps accounting: without it sacct knows no jobs and
    Snakemake would wait forever."""
    if storage:
        fake = tmp_path / "scontrol"
        fake.write_text(f"#!/bin/sh\necho 'MinJobAge               = 300 sec'\n"
                        f"echo 'AccountingStorageType   = {storage}'\n")
        fake.chmod(0o755)
    prof = _profile(tmp_path)
    assert prof["slurm-status-command"] == expected
    assert prof["default-resources"]["slurm_account"] == "<ACCOUNT>"  # the placeholders stay for the user


@pytest.mark.skipif(not HAS_PLUGIN, reason="snakemake-executor-plugin-slurm is not installed")
def test_profile_placeholders_stop_the_pipeline_early(tmp_path):
    """The shipped profile, unedited: one clear error before anything is submitted."""
    cmd = [*SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
           "--workflow-profile", str(ROOT / "profiles" / "slurm"), "-n"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "default-resources: slurm_account is still the placeholder <ACCOUNT>" in out, out[-3000:]
    assert "sbatch" not in out
    # filled in, the same dry run lists the grid
    prof = tmp_path / "prof"
    prof.mkdir()
    text = (ROOT / "profiles" / "slurm" / "config.yaml").read_text()
    (prof / "config.yaml").write_text(text.replace("<ACCOUNT>", "a").replace("<GPU_PARTITION>", "g").replace("<PARTITION>", "p"))
    cmd[cmd.index("--workflow-profile") + 1] = str(prof)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "still the placeholder" not in r.stdout + r.stderr


# --------------------------------------------------------------------------- the local cluster
def _free_port_pair() -> int:
    """A port p with p and p + 1 free (slurmctld, slurmd)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 65000:
            with socket.socket() as s2:
                try:
                    s2.bind(("127.0.0.1", port + 1))
                    return port
                except OSError:
                    continue
    raise RuntimeError("no free port pair")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A single-node cluster of our own (state dir, ports); stopped at the end of the module."""
    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster needs root (slurmd runs as root)")
    have = all(shutil.which(b, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") for b in ("slurmctld", "slurmd", "munged"))
    if not have and not shutil.which("apt-get"):
        pytest.skip("SLURM is not installed and there is no apt-get to install it (apt-get install slurm-wlm munge)")
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "TSSM_SLURM_DIR": str(state), "TSSM_SLURM_PORT": str(_free_port_pair())}
    r = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=600, env=env)
    if r.returncode != 0 and not have and "install" in r.stderr:
        pytest.skip(f"could not install SLURM: {r.stderr.strip().splitlines()[-1]}")
    try:
        assert r.returncode == 0, r.stderr
        assert f"SLURM_CONF={state}/etc/slurm.conf" in r.stdout
        env["SLURM_CONF"] = f"{state}/etc/slurm.conf"
        env["PATH"] = env["PATH"] + ":/usr/sbin:/sbin"
        # idempotent: a second start finds it running
        r2 = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=120, env=env)
        assert r2.returncode == 0 and "already running" in r2.stderr, r2.stderr
        yield {"state": state, "env": env}
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, text=True, timeout=120, env=env)
        down = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True, timeout=60, env=env)
        assert down.returncode != 0 and "slurmctld: stopped" in down.stdout, down.stdout


def _run_serial(out: Path, **settings) -> pd.DataFrame:
    cfg = RunConfig.from_dict(dict(mlflow=False, checkpoint=False, threads=1, out=str(out), **settings))
    train(cfg, progress=False)
    return pd.read_csv(out / "metrics.csv")


def test_srun_two_ranks_match_the_serial_run(cluster, tmp_path):
    """The README's SLURM example minus GPUs: srun starts one task per rank, the CLI reads
    SLURM's variables, and the result equals the serial run."""
    env = {**cluster["env"], "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port_pair()), "OMP_NUM_THREADS": "1"}
    # the mapping under real srun: both ranks on this node
    probe = "from tssm.parallel import slurm_to_torchrun_env as f, os; f(); e = os.environ; " \
            "print(e['RANK'], e['WORLD_SIZE'], e['LOCAL_RANK'], e['LOCAL_WORLD_SIZE'])"
    r = subprocess.run(["srun", "--ntasks", "2", "--cpus-per-task", "1", sys.executable, "-c", probe],
                       capture_output=True, text=True, timeout=120, env={**env, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(r.stdout.split("\n")[:2]) == ["0 2 0 2", "1 2 1 2"], r.stdout

    settings = dict(dataset="digits", width=32, depth=4, epochs=3, method="gsadmm", splits=2)
    t0 = time.time()
    cmd = ["srun", "--ntasks", "2", "--cpus-per-task", "1", sys.executable, "-m", "tssm", "train",
           "--dataset", "digits", "--width", "32", "--depth", "4", "--epochs", "3", "--method", "gsadmm",
           "--splits", "2", "--threads", "1", "--mlflow", "false", "--checkpoint", "false", "--no-progress",
           "--out", str(tmp_path / "srun")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**env, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    print(f"srun --ntasks 2 tssm train: {time.time() - t0:.1f} s")
    run = json.loads((tmp_path / "srun" / "run.json").read_text())
    assert run["status"] == "finished" and run["environment"]["world_size"] == 2
    d = pd.read_csv(tmp_path / "srun" / "metrics.csv")
    assert {"wait_s_r0", "wait_s_r1"} <= set(d.columns)  # two ranks really exchanged messages
    s = _run_serial(tmp_path / "serial", **settings)
    rel = max_rel_diff(s, d)
    print(f"srun vs serial: max relative difference {rel:.2e} over {len(d)} epochs")
    assert rel < 1e-5


# --------------------------------------------------------------------------- the pipeline on SLURM
EPOCHS = 40
RUN = {"width": 64, "depth": 4, "batch_size": 8, "threads": 1, "checkpoint": True, "device": "cpu"}
PIPELINE = {
    "name": "slurm",
    "experiment": "slurm-test",
    "run": RUN,
    "experiments": [{"name": "main", "datasets": ["digits"], "model": "mlp", "methods": ["gsadmm", "adam"],
                     "splits": [1, 2], "seeds": [0], "epochs": EPOCHS, "workers": 2, "mem_mb": 500, "runtime": 10}],
    "figures": {"figure1_splits": 2, "figure2_splits": [2]},
}
POINTS = {("adam", 1), ("gsadmm", 1), ("gsadmm", 2)}
REQUEUE, CANCEL = ("gsadmm", 2), ("gsadmm", 1)  # the 2-rank job is preempted, the other one cancelled


def _run_dir(wd: Path, method: str, n: int) -> Path:
    return wd / "results" / "slurm" / "runs" / "digits" / "mlp" / method / f"n{n}" / "seed0"


def _last_epoch(run_dir: Path) -> int:
    try:
        return int(pd.read_csv(run_dir / "metrics.csv")["epoch"].iloc[-1])
    except (OSError, ValueError, KeyError, IndexError, pd.errors.EmptyDataError):
        return -1


def _jobs(env) -> dict[tuple[str, int], tuple[str, str]]:
    """{(method, n): (job id, state)} of this workflow's train jobs (the plugin puts the
    wildcards in the job's comment)."""
    r = subprocess.run(["squeue", "-h", "--states=all", "-o", "%i|%T|%k"], capture_output=True, text=True,
                       timeout=30, env=env)
    jobs = {}
    for line in r.stdout.splitlines():
        jid, state, comment = (line.split("|") + ["", ""])[:3]
        for method, n in POINTS:
            if f"rule_train_wildcards_digits_mlp_{method}_{n}_0" in comment:
                jobs[(method, n)] = (jid, state)
    return jobs


def _job_counts(out: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake run as {rule: count}."""
    counts = {}
    for line in out.split("Job stats:", 1)[-1].splitlines()[:20] if "Job stats:" in out else []:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


def _ckpt_epoch(run_dir: Path) -> int | None:
    try:
        return int(torch.load(run_dir / "checkpoint" / "rank0.pt", map_location="cpu",
                              weights_only=True)["train_state"]["epoch"])
    except Exception:
        return None


@pytest.fixture(scope="module")
def pipeline(cluster, tmp_path_factory):
    """The pipeline through the slurm profile (filled in for the local cluster) while one job is
    requeued mid-run and another cancelled; then the same command again, which finishes the
    grid. Returns what was seen."""
    if not HAS_PLUGIN:
        pytest.skip("snakemake-executor-plugin-slurm is not installed")
    if not (ETC_CONF.is_symlink() and os.readlink(ETC_CONF) == str(cluster["state"] / "etc" / "slurm.conf")):
        pytest.skip(f"{ETC_CONF} belongs to another cluster; Snakemake's jobs would not find this one")
    wd = tmp_path_factory.mktemp("pipeline")
    cfg = wd / "slurm.yaml"
    cfg.write_text(yaml.safe_dump(PIPELINE, sort_keys=False))
    env = {k: v for k, v in cluster["env"].items() if k != "MLFLOW_TRACKING_URI"}
    # a cancel is final here (the profile's restart-times would submit the job once more)
    cmd = [*SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(wd),
           "--workflow-profile", str(cluster["state"] / "profile"), "--configfile", str(cfg),
           "--restart-times", "0", "--slurm-init-seconds-before-status-checks", "2"]
    seen = {"requeue_epoch": None, "interrupted": None, "resume_ckpt": None, "cancel_epoch": None,
            "min_epoch_after_restart": None, "states": []}
    t0 = time.time()
    log = open(wd / "first.log", "w")
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=wd, start_new_session=True)
    deadline = time.time() + 480
    requeued_id = None
    try:
        while p.poll() is None:
            assert time.time() < deadline, "the pipeline did not finish in 8 minutes"
            jobs = _jobs(env)
            rq_dir, cc_dir = _run_dir(wd, *REQUEUE), _run_dir(wd, *CANCEL)
            if REQUEUE in jobs:
                jid, state = jobs[REQUEUE]
                if seen["states"][-1:] != [state]:
                    seen["states"].append(state)
                if requeued_id is None and state == "RUNNING" and _last_epoch(rq_dir) >= 2:
                    seen["requeue_epoch"] = _last_epoch(rq_dir)
                    subprocess.run(["scontrol", "requeue", jid], check=True, timeout=30, env=env)
                    requeued_id = jid
                    seen["states"].append("requeue")
                elif requeued_id and seen["interrupted"] is None and (rq_dir / "run.json").exists():
                    info = json.loads((rq_dir / "run.json").read_text())
                    if info["status"] == "interrupted":
                        seen["interrupted"] = info["reason"]
                after = seen["states"][seen["states"].index("requeue"):] if requeued_id else []
                if state == "RUNNING" and "PENDING" in after:  # the rerun has started
                    if seen["resume_ckpt"] is None:
                        seen["resume_ckpt"] = _ckpt_epoch(rq_dir)
                    e = _last_epoch(rq_dir)
                    if e >= 0:
                        m = seen["min_epoch_after_restart"]
                        seen["min_epoch_after_restart"] = e if m is None else min(m, e)
            if CANCEL in jobs and seen["cancel_epoch"] is None:
                jid, state = jobs[CANCEL]
                if state == "RUNNING" and _last_epoch(cc_dir) >= 2:
                    seen["cancel_epoch"] = _last_epoch(cc_dir)
                    subprocess.run(["scancel", jid], check=True, timeout=30, env=env)
            time.sleep(0.2)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, 15)
            p.wait(timeout=60)
        log.close()
    seen["first_rc"] = p.returncode
    seen["first_out"] = (wd / "first.log").read_text()
    seen["first_status"] = {pt: json.loads((_run_dir(wd, *pt) / "run.json").read_text())["status"]
                            if (_run_dir(wd, *pt) / "run.json").exists() else None for pt in POINTS}
    seen["first_s"] = time.time() - t0
    seen["cancel_ckpt"] = _ckpt_epoch(_run_dir(wd, *CANCEL))
    # the same command again: only the cancelled point runs (from its checkpoint), then the summary
    t1 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=480, env=env, cwd=wd)
    seen["second_rc"], seen["second_out"], seen["second_s"] = r.returncode, r.stdout + r.stderr, time.time() - t1
    seen["wd"] = wd
    print(f"pipeline on SLURM: first pass {seen['first_s']:.0f} s, second pass {seen['second_s']:.0f} s")
    return seen


def test_pipeline_on_slurm_runs_every_point(pipeline):
    """Every run's files, the summary and the MLflow runs, 2-rank job included."""
    wd = pipeline["wd"]
    assert pipeline["second_rc"] == 0, pipeline["second_out"][-5000:]
    res = wd / "results" / "slurm"
    for method, n in POINTS:
        run_dir = _run_dir(wd, method, n)
        info = json.loads((run_dir / "run.json").read_text())
        assert info["status"] == "finished", (method, n, info.get("reason"))
        assert info["environment"]["world_size"] == (2 if n == 2 else 1)
        m = pd.read_csv(run_dir / "metrics.csv")
        assert list(m["epoch"]) == list(range(EPOCHS + 1))
        assert not (run_dir / "checkpoint" / "rank0.pt").exists()  # a finished run drops its checkpoint
    summary = pd.read_csv(res / "summary.csv")
    assert {(m, int(n)) for m, n in zip(summary["method"], summary["splits"])} == POINTS
    assert set(summary["status"]) == {"finished"}
    assert dict(zip(summary["method"] + summary["splits"].astype(str), summary["workers"])) == {
        "adam1": 1, "gsadmm1": 1, "gsadmm2": 2}
    assert (res / "summary.md").stat().st_size > 100
    assert (res / "figures" / "figure1_train_acc.png").stat().st_size > 1000

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{wd / 'results' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["slurm-test"])
    runs = runs[runs["tags.tssm.kind"] != "pipeline"]  # the config's own run (summary and figures)
    # one MLflow run per point: the requeued and the cancelled job went on in their first run
    assert len(runs) == len(POINTS)
    assert {(r["tags.method"], int(r["tags.splits"])) for _, r in runs.iterrows()} == POINTS
    assert set(runs["status"]) == {"FINISHED"}
    client = mlflow.tracking.MlflowClient()
    for _, run in runs.iterrows():
        steps = [m.step for m in client.get_metric_history(run["run_id"], "test_acc")]
        assert sorted(steps) == list(range(EPOCHS + 1)), (run["tags.method"], run["tags.splits"], steps)


def test_requeued_job_resumes_from_its_checkpoint(pipeline, tmp_path):
    """`scontrol requeue` of the running 2-rank job: SIGTERM, checkpoint, back to the queue;
    Snakemake keeps waiting, the rerun resumes after the checkpointed epoch and ends with the
    numbers of an uninterrupted run."""
    wd = pipeline["wd"]
    k = pipeline["requeue_epoch"]
    assert k is not None, "the job finished before it could be requeued: " + str(pipeline["states"])
    states = pipeline["states"]
    assert "PENDING" in states[states.index("requeue"):], states  # back in the queue, then run again
    assert pipeline["first_status"][REQUEUE] == "finished"
    assert pipeline["interrupted"] and "stopped by signal 15 after epoch" in pipeline["interrupted"]
    stopped = int(pipeline["interrupted"].rsplit("epoch", 1)[1].split(";")[0])
    resumed = pipeline["resume_ckpt"]
    assert resumed is not None, "no checkpoint when the requeued job started again"
    print(f"requeued during epoch {k + 1} (epoch {k} recorded); stopped after epoch {stopped}; rerun resumed "
          f"from the checkpoint of epoch {resumed} (at epoch {resumed + 1}); job: {' -> '.join(states)}")
    assert k <= stopped < EPOCHS
    assert resumed == stopped
    # resumed, not restarted: the rerun never showed fewer epochs than the checkpoint held
    assert pipeline["min_epoch_after_restart"] is not None and pipeline["min_epoch_after_restart"] >= stopped
    got = pd.read_csv(_run_dir(wd, *REQUEUE) / "metrics.csv")
    ref = _run_serial(tmp_path / "ref", dataset="digits", model="mlp", method="gsadmm", splits=2, epochs=EPOCHS,
                      width=64, depth=4, batch_size=8)
    rel = max_rel_diff(ref, got)
    last = got.iloc[-1]
    print(f"requeued run, final: train_loss {last.train_loss:.6f} train_acc {last.train_acc:.4f} "
          f"test_acc {last.test_acc:.4f}; uninterrupted (serial): train_loss {ref.iloc[-1].train_loss:.6f} "
          f"train_acc {ref.iloc[-1].train_acc:.4f} test_acc {ref.iloc[-1].test_acc:.4f}; max rel diff {rel:.2e}")
    assert rel < 1e-5


def test_cancelled_job_fails_and_the_grid_goes_on(pipeline, tmp_path):
    """`scancel` of a running job: Snakemake reports it failed, the other jobs finish; the
    same command again resumes it from its checkpoint."""
    wd = pipeline["wd"]
    assert pipeline["cancel_epoch"] is not None, "the job finished before it could be cancelled"
    out = pipeline["first_out"]
    assert pipeline["first_rc"] != 0
    assert "Error in rule train" in out and "CANCELLED" in out, out[-5000:]
    assert "gsadmm/n1/seed0/done.json" in out.split("Error in rule train", 1)[1][:2000]
    # the failed job is not marked done (its record says it did not finish); the others finished
    # (the requeued one included)
    status = pipeline["first_status"]
    assert status[CANCEL] != "finished" and status[REQUEUE] == status[("adam", 1)] == "finished"
    ck = pipeline["cancel_ckpt"]
    assert ck is not None and pipeline["cancel_epoch"] <= ck < EPOCHS
    # the second pass ran only that job (and the summary and figures that read it)
    assert _job_counts(pipeline["second_out"]).get("train") == 1, pipeline["second_out"][-3000:]
    assert "rule_train_wildcards_digits_mlp_gsadmm_1_0" in pipeline["second_out"] or \
        "mlp/gsadmm/n1/seed0/done.json" in pipeline["second_out"]
    got = pd.read_csv(_run_dir(wd, *CANCEL) / "metrics.csv")
    ref = _run_serial(tmp_path / "ref", dataset="digits", model="mlp", method="gsadmm", splits=1, epochs=EPOCHS,
                      width=64, depth=4, batch_size=8)
    rel = max_rel_diff(ref, got)
    print(f"cancelled during epoch {pipeline['cancel_epoch'] + 1} (checkpoint of epoch {ck} left); second pass "
          f"resumed it; vs uninterrupted: max rel diff {rel:.2e}")
    assert rel < 1e-5
