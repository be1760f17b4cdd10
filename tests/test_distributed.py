"""The distributed executor (torchrun, gloo on CPU) gives the serial solver's numbers, and a
lost rank ends the others with a clear error instead of a hang."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tssm.config import RunConfig
from tssm.run import train

COLS = ["train_loss", "train_acc", "test_loss", "test_acc", "objective", "residual", "fit_1", "move_1", "move_2"]
ARGS = ["--dataset", "digits", "--width", "64", "--depth", "6", "--epochs", "2", "--mlflow", "false",
        "--checkpoint", "false", "--no-progress", "--threads", "1"]


def torchrun(nproc: int, args: list[str], **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--rdzv-backend", "c10d", "--rdzv-endpoint", "localhost:0", "-m", "tssm", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kw)


@pytest.mark.parametrize("method,n,ranks", [("gsadmm", 2, 2), ("gsam", 2, 2), ("gsadmm", 3, 2), ("gsam", 3, 2)])
@pytest.mark.slow  # torchrun ranks
def test_distributed_matches_serial(method, n, ranks, tmp_path):
    opts = ARGS + ["--method", method, "--splits", str(n)]
    serial_cfg = RunConfig.from_dict(dict(dataset="digits", width=64, depth=6, epochs=2, mlflow=False, checkpoint=False,
                                          threads=1, method=method, splits=n, out=str(tmp_path / "serial")))
    train(serial_cfg, progress=False)
    p = torchrun(ranks, opts + ["--out", str(tmp_path / "dist")])
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err[-3000:]
    s = pd.read_csv(tmp_path / "serial" / "metrics.csv")
    d = pd.read_csv(tmp_path / "dist" / "metrics.csv")
    assert len(s) == len(d) == 3
    cols = [c for c in COLS if c in s]
    rel = ((s[cols] - d[cols]).abs() / s[cols].abs().clip(lower=1e-8)).max().max()
    assert rel < 1e-5, (s[cols] - d[cols]).abs().max()
    assert "world_size" in (tmp_path / "dist" / "run.json").read_text()
    # Every rank reports how long it waited on the others (the parallel-efficiency breakdown).
    waits = d.loc[d.epoch > 0, [f"wait_s_r{r}" for r in range(ranks)]]
    assert (waits >= 0).all().all() and (waits.sum(axis=1) > 0).all()
    # counted within the epoch's own clock (evaluation's waits are not carried over)
    assert waits.le(d.loc[d.epoch > 0, "epoch_time_s"], axis=0).all().all()
    assert not any(c.startswith("wait_s") for c in s.columns)
    # per-rank peak memory, the row's figure the largest; the epoch's time the slowest rank's
    trained = d[d.epoch > 0]
    peaks = trained[[f"peak_mem_mb_r{r}" for r in range(ranks)]]
    assert (trained["peak_mem_mb"] == peaks.max(axis=1)).all() and (peaks > 0).all().all()
    assert not any(c.startswith("epoch_time_s_r") for c in d.columns)
    env = json.loads((tmp_path / "dist" / "run.json").read_text())["environment"]
    assert [r["cuda_visible_devices"] for r in env["ranks"]] == [os.environ.get("CUDA_VISIBLE_DEVICES")] * ranks
    assert env["tf32"] is False


@pytest.mark.slow  # torchrun ranks
def test_more_ranks_than_subnetworks(tmp_path):
    p = torchrun(2, ARGS + ["--method", "gsadmm", "--splits", "1", "--out", str(tmp_path / "r")])
    out, err = p.communicate(timeout=120)
    assert p.returncode != 0
    assert "2 ranks for 1 subnetworks" in err


def _rank1_pid(out: Path) -> int | None:
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"RANK=1" in env and str(out).encode() in cmd and b"tssm" in cmd:
            return int(pid)
    return None


@pytest.mark.parametrize("fault", ["kill", "stall"])
@pytest.mark.slow  # torchrun ranks and a dist_timeout
def test_lost_rank_ends_the_others(fault, tmp_path):
    """Kill (SIGKILL) or stall (SIGSTOP) rank 1 mid-run: rank 0 stops within the timeout with a
    clear error and records the run as failed."""
    out = tmp_path / "r"
    args = [a if a != "2" else "500" for a in ARGS]  # --epochs 500: still running when hit
    p = torchrun(2, args + ["--method", "gsadmm", "--splits", "2", "--dist-timeout", "5", "--out", str(out)],
                 start_new_session=True)
    deadline = time.time() + 90
    while not (out / "metrics.csv").exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.2)
    assert (out / "metrics.csv").exists(), p.communicate()[1][-2000:] if p.poll() is not None else "run never started"
    victim = _rank1_pid(out)
    assert victim is not None
    t0 = time.time()
    os.kill(victim, signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and '"failed"' not in ((out / "run.json").read_text() if (out / "run.json").exists() else ""):
            time.sleep(0.2)
        elapsed = time.time() - t0
        info = (out / "run.json").read_text()
        assert '"failed"' in info and "lost contact with rank 1" in info
        assert elapsed < 30
    finally:
        if fault == "stall":
            os.kill(victim, signal.SIGKILL)
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate(timeout=30)


@pytest.mark.parametrize("owner, peer, named", [
    ([0, 1], None, "rank 1"),          # a failed collective in a two-rank run names the other rank
    ([0, 0, 1, 2], None, "one of ranks 1, 2"),
    ([0, 1, 2], 2, "rank 2"),          # a failed point-to-point exchange names its peer
])
def test_lost_contact_names_the_peer(owner, peer, named):
    import torch
    from tssm.errors import DistributedError
    from tssm.parallel import DistMailbox
    box = DistMailbox(owner, 0, torch.device("cpu"), 5.0)
    err = box._lost(peer, RuntimeError("Connection closed by peer\nmore"))
    assert isinstance(err, DistributedError)
    assert f"rank 0 lost contact with {named}:" in str(err) and "Connection closed by peer" in str(err)


@pytest.mark.parametrize("flag, values", [("--lr", ("0.001", "0.002")), ("--epochs", ("2", "3"))])
@pytest.mark.slow  # torchrun ranks
def test_ranks_started_with_different_settings_all_stop(flag, values, tmp_path):
    """A launcher that gives one rank other arguments: every rank stops at once, naming the field."""
    wrapper = tmp_path / "wrap.sh"
    opts = [a for a in ARGS if a not in ("--epochs", "2")] if flag == "--epochs" else ARGS
    wrapper.write_text("#!/bin/sh\n"
                       f'if [ "$RANK" = 0 ]; then v={values[0]}; else v={values[1]}; fi\n'
                       f'exec {sys.executable} -m tssm train {" ".join(opts)} --method gsadmm --splits 2 '
                       f'{flag} $v --out {tmp_path / "r"}\n')
    wrapper.chmod(0o755)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
           "--rdzv-endpoint", "localhost:0", "--no-python", str(wrapper)]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode != 0
    field = flag[2:]
    assert f"different settings: {field} (rank 0: " in p.stderr, p.stderr[-2000:]
    assert time.time() - t0 < 60
    assert not (tmp_path / "r" / "run.json").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two torchrun nodes
def test_two_nodes_of_one_rank_on_loopback_choose_gloo_on_cpu(tmp_path):
    """Two `torchrun --nnodes 2 --nproc-per-node 1` processes meet through the c10d rendezvous on
    127.0.0.1, as two single-rank nodes would: each node has one local rank (LOCAL_WORLD_SIZE 1),
    the run records the backend it chose (gloo through the CPU: no GPU here), and it trains to
    the serial run's numbers."""
    opts = ARGS + ["--method", "gsadmm", "--splits", "2"]
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                               "--node-rank", str(node), "--rdzv-backend", "c10d", "--rdzv-id", "two-nodes",
                               "--rdzv-endpoint", f"127.0.0.1:{port}", "-m", "tssm", "train", *opts,
                               "--out", str(tmp_path / "dist")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for node in (0, 1)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
    info = json.loads((tmp_path / "dist" / "run.json").read_text())
    assert info["status"] == "finished"
    assert {k: info["environment"][k] for k in ("world_size", "local_world_size", "backend", "comm_device", "device")} \
        == {"world_size": 2, "local_world_size": 1, "backend": "gloo", "comm_device": "cpu", "device": "cpu"}
    serial = RunConfig.from_dict(dict(dataset="digits", width=64, depth=6, epochs=2, mlflow=False, checkpoint=False,
                                      threads=1, method="gsadmm", splits=2, out=str(tmp_path / "serial")))
    train(serial, progress=False)
    s = pd.read_csv(tmp_path / "serial" / "metrics.csv")
    d = pd.read_csv(tmp_path / "dist" / "metrics.csv")
    cols = [c for c in COLS if c in s]
    assert len(s) == len(d) == 3
    rel = ((s[cols] - d[cols]).abs() / s[cols].abs().clip(lower=1e-8)).max().max()
    assert rel < 1e-5, (s[cols] - d[cols]).abs().max()
    assert "backend" not in json.loads((tmp_path / "serial" / "run.json").read_text())["environment"]


@pytest.mark.slow  # a dist_timeout
def test_rank_whose_master_port_is_held_fails_fast(tmp_path):
    """Another program holds MASTER_PORT (accepts connections, never answers): a non-zero rank
    stops within about --dist-timeout with one line naming the address and port, not a hang."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(8)
        port = holder.getsockname()[1]
        env = {**os.environ, "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        t0 = time.time()
        p = subprocess.run([sys.executable, "-m", "tssm", "train", *ARGS, "--method", "gsadmm", "--splits", "2",
                            "--dist-timeout", "5", "--out", str(tmp_path / "r")],
                           capture_output=True, text=True, timeout=90, env=env)
        elapsed = time.time() - t0
    assert p.returncode == 2, p.stderr[-2000:]
    assert elapsed < 60
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith("error: rank 1 could not join") and f"MASTER_ADDR=127.0.0.1 MASTER_PORT={port}" in line
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "r" / "run.json").exists()


def test_slowest_rank_sets_the_epoch_time():
    from tssm.run import slowest_rank

    metrics = {"train_loss": 1.0, "epoch_time_s_r0": 2.0, "epoch_time_s_r1": 3.5, "peak_mem_mb_r0": 10.0,
               "peak_mem_mb_r1": 7.0}
    assert slowest_rank(metrics, 2.0, 12.0) == (3.5, 10.0)  # the gathered figures, not this rank's later reading
    assert "epoch_time_s_r1" not in metrics and "peak_mem_mb_r1" in metrics
    assert slowest_rank({"train_loss": 1.0}, 1.5, 4.0) == (1.5, 4.0)  # one process


@pytest.mark.parametrize("build, driver, says", [
    (None, None, "CPU-only build (torch.version.cuda is None)"),
    ("13.0", None, "no NVIDIA driver is loaded here"),
    ("13.0", "535.104.05", "built for CUDA 13.0, and the NVIDIA driver here (535.104.05) does not run it"),
])
def test_no_cuda_error_names_the_build_and_driver(monkeypatch, build, driver, says):
    """--device cuda without a usable GPU: the one line names the build/driver check, never `auto`."""
    import torch

    from tssm import parallel
    from tssm.errors import ConfigError
    from tssm.run import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", build)
    monkeypatch.setattr(parallel, "driver_version", lambda: driver)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(ConfigError) as e:
        resolve_device("cuda")
    msg = str(e.value)
    assert says in msg and "auto" not in msg and "\n" not in msg
    if driver:
        assert "--index-url https://download.pytorch.org/whl/cu" in msg


def test_tf32_is_off_unless_asked_and_part_of_the_identity():
    import torch

    from tssm.run import set_tf32

    base = dict(dataset="digits", method="gsadmm", mlflow=False)
    off, on = RunConfig.from_dict(base), RunConfig.from_dict({**base, "tf32": True})
    assert off.config_hash() != on.config_hash()
    assert off.hyperparameters()["tf32"] is False  # recorded as trained, in the identity
    set_tf32(False)
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    set_tf32(True)
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    set_tf32(False)


def test_checkpoint_every(tmp_path, monkeypatch):
    """checkpoint_every=2: checkpoints after epochs 2 and 4 only; a stop by signal after epoch 1
    still checkpoints it, and the resumed run equals the uninterrupted one."""
    import tssm.run as run
    from tssm.errors import Interrupted
    from tssm.interrupt import sigterm_after_epoch

    def cfg(out):
        return RunConfig.from_dict(dict(dataset="digits", width=16, depth=4, epochs=4, n_train=300, mlflow=False,
                                        checkpoint=True, checkpoint_every=2, threads=1, out=str(tmp_path / out)))

    saved = []
    real_save = run.save_checkpoint
    monkeypatch.setattr(run, "save_checkpoint", lambda path, c, state, *a: (saved.append(state.epoch),
                                                                            real_save(path, c, state, *a)))
    run.train(cfg("ref"), progress=False)
    assert saved == [2, 4]
    saved.clear()
    with sigterm_after_epoch(1), pytest.raises(Interrupted):
        run.train(cfg("cut"), progress=False)
    assert saved == [1]
    run.train(cfg("cut"), progress=False)
    a, b = pd.read_csv(tmp_path / "ref" / "metrics.csv"), pd.read_csv(tmp_path / "cut" / "metrics.csv")
    pd.testing.assert_frame_equal(a[COLS[:6]], b[COLS[:6]])
