"""Faults: divergence, interruption and resume, concurrent MLflow logging."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from tssm.cli import main

SMALL = ["--dataset", "digits", "--width", "64", "--depth", "6", "--threads", "1", "--no-progress"]
NUMBERS = ["train_loss", "train_acc", "test_loss", "test_acc", "objective", "residual", "move_1", "move_2"]


def test_divergence_is_recorded_not_crashed(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = tmp_path / "run"
    code = main(["train", *SMALL, "--method", "sgd", "--splits", "1", "--lr", "1e6", "--epochs", "5",
                 "--tracking-uri", uri, "--experiment", "div", "--out", str(out)])
    assert code == 3
    assert "diverged" in capsys.readouterr().err
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "diverged"
    assert "nan" in info["reason"].lower() or "inf" in info["reason"].lower()
    import mlflow

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["div"])
    assert len(runs) == 1
    assert runs.loc[0, "status"] == "FAILED"
    assert "diverged" in runs.loc[0, "tags.failure_reason"]


def _popen(args, out):
    return subprocess.Popen([sys.executable, "-m", "tssm", "train", *SMALL, *args, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rows(out):
    try:
        return len(pd.read_csv(out / "metrics.csv"))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_resume_after_kill_equals_uninterrupted(sig, tmp_path):
    args = ["--method", "gsadmm", "--splits", "2", "--epochs", "12", "--mlflow", "false", "--checkpoint", "true"]
    ref = tmp_path / "ref"
    assert main(["train", *SMALL, *args, "--out", str(ref)]) == 0
    out = tmp_path / "run"
    p = _popen(args, out)
    deadline = time.time() + 60
    while _rows(out) < 4 and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    assert p.poll() is None, "finished before it could be interrupted"
    p.send_signal(sig)
    p.communicate(timeout=60)
    assert p.returncode != 0
    done = _rows(out) - 1
    assert done < 12
    if sig == signal.SIGTERM:
        assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    assert list((out / "checkpoint").glob("rank0.pt"))
    assert main(["train", *SMALL, *args, "--out", str(out)]) == 0  # resumes
    a, b = pd.read_csv(ref / "metrics.csv"), pd.read_csv(out / "metrics.csv")
    assert list(a.epoch) == list(b.epoch) == list(range(13))
    pd.testing.assert_frame_equal(a[NUMBERS], b[NUMBERS], rtol=1e-6)
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    assert not (out / "checkpoint" / "rank0.pt").exists()


def test_changed_config_does_not_reuse_checkpoint(tmp_path):
    args = ["--method", "gsadmm", "--splits", "2", "--epochs", "30", "--mlflow", "false", "--checkpoint", "true"]
    out = tmp_path / "run"
    p = _popen(args, out)
    deadline = time.time() + 60
    while _rows(out) < 3 and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.communicate()
    changed = ["train", *SMALL, *args[:-4], "--rho", "2", "--mlflow", "false", "--checkpoint", "true",
               "--epochs", "2", "--out", str(out)]
    assert main(changed) == 2  # the folder's checkpoint belongs to another config: refused
    assert list((out / "checkpoint").glob("rank0.pt"))
    assert main([*changed, "--overwrite"]) == 0  # moved aside, never resumed from
    m = pd.read_csv(out / "metrics.csv")
    assert list(m.epoch) == [0, 1, 2]
    assert list((out / ".replaced").glob("*/checkpoint/rank0.pt"))


@pytest.mark.slow  # 8 concurrent processes
def test_concurrent_runs_lose_nothing(tmp_path):
    """8 processes logging to one sqlite MLflow store at once: every run and every point lands."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment("conc")  # created once, before the fan-out (as the pipeline does)
    procs = [
        subprocess.Popen([sys.executable, "-m", "tssm", "train", *SMALL, "--method", "gsadmm", "--splits", "2",
                          "--epochs", "3", "--seed", str(s), "--tracking-uri", uri, "--experiment", "conc",
                          "--checkpoint", "false", "--out", str(tmp_path / f"r{s}")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        for s in range(8)
    ]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    assert not any("locked" in e for e in errs), errs
    runs = mlflow.search_runs(experiment_names=["conc"])
    assert len(runs) == 8 and set(runs.status) == {"FINISHED"}
    client = mlflow.tracking.MlflowClient()
    for rid in runs.run_id:
        hist = client.get_metric_history(rid, "train_acc")
        assert sorted(m.step for m in hist) == [0, 1, 2, 3]


def _steps(uri, experiment):
    """{run status: sorted steps of its train_time_s} of every run of ``experiment`` in ``uri``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return [(r.info.status, sorted(m.step for m in client.get_metric_history(r.info.run_id, "train_time_s")), r.data.tags)
            for r in runs]


def test_resume_with_another_tracking_uri_records_every_epoch(tmp_path, capsys):
    """Killed, then resumed with another --tracking-uri: the new store gets one run holding every
    epoch (the earlier ones too), and the first store's run is closed KILLED, not left RUNNING."""
    first, second = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    args = ["--method", "gsadmm", "--splits", "2", "--epochs", "12", "--checkpoint", "true", "--experiment", "moved"]
    out = tmp_path / "run"
    p = _popen([*args, "--tracking-uri", first], out)
    deadline = time.time() + 60
    while _rows(out) < 4 and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    assert p.poll() is None, "finished before it could be killed"
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    assert main(["train", *SMALL, *args, "--tracking-uri", second, "--out", str(out)]) == 0
    assert "was logged to " + first in capsys.readouterr().err
    [(status, steps, tags)] = _steps(second, "moved")
    assert status == "FINISHED" and steps == list(range(13)) and tags["resumed_from_run"].startswith(first)
    [(old_status, old_steps, old_tags)] = _steps(first, "moved")
    assert old_status == "KILLED" and old_tags["continued_in"].startswith(second) and old_steps
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "finished" and info["mlflow_run_id"] in old_tags["continued_in"]


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['TSSM_TEST_MARKER']}",))


@pytest.mark.parametrize("content, why", [
    ("garbage", "not a readable checkpoint"),  # what torch's loader says varies with the bytes
    ("not ours", "not a tssm checkpoint"),
    ("runs code", "holds objects other than tensors and plain data"),
    ("other ranks", "lacks subnetwork 2: made by a run with other ranks"),
])
def test_unusable_checkpoint_is_ignored_with_one_line(content, why, tmp_path, capsys, monkeypatch):
    """A checkpoint that is not ours, or a tampered one, is never loaded (no code runs) and never
    stops the run: one warning line says why, and the run starts over."""
    import torch

    from tssm.config import RunConfig

    args = ["--method", "gsadmm", "--splits", "2", "--epochs", "1", "--mlflow", "false", "--checkpoint", "true"]
    out, marker = tmp_path / "run", tmp_path / "code-ran"
    monkeypatch.setenv("TSSM_TEST_MARKER", str(marker))
    (out / "checkpoint").mkdir(parents=True)
    ckpt = out / "checkpoint" / "rank0.pt"
    if content == "garbage":
        ckpt.write_bytes(b"\x80\x02" + bytes(range(40, 256)) * 8)
    elif content == "not ours":
        torch.save({"weights": torch.zeros(3)}, ckpt)
    elif content == "runs code":
        torch.save({"config_hash": _RunsCode(), "train_state": {}, "stages": {}}, ckpt)
    else:  # what rank 0 of a 2-rank run holds: only its own subnetwork
        cfg = RunConfig.from_dict(dict(dataset="digits", width=64, depth=6, threads=1, method="gsadmm", splits=2,
                                       epochs=1, mlflow=False, checkpoint=True, out=str(out)))
        torch.save({"config_hash": cfg.config_hash(), "train_state": {}, "stages": {0: {}}}, ckpt)
    assert main(["train", *SMALL, *args, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"warning: ignoring unusable checkpoint {ckpt} (" in err and why in err, err
    assert "UserWarning" not in err and len(err.strip().splitlines()) == 1, err
    assert not marker.exists()
    assert _rows(out) == 2 and json.loads((out / "run.json").read_text())["status"] == "finished"


def test_run_files_follow_the_umask(tmp_path):
    """Records are readable by the group/others as the umask allows (not mkstemp's 0600)."""
    old = os.umask(0o022)
    try:
        out = tmp_path / "run"
        assert main(["train", *SMALL, "--method", "adam", "--epochs", "1", "--mlflow", "false", "--out", str(out)]) == 0
    finally:
        os.umask(old)
    for name in ("run.json", "metrics.csv"):
        assert (out / name).stat().st_mode & 0o777 == 0o644, name


def _train(out, *extra):
    return main(["train", *SMALL, "--method", "adam", "--epochs", "2", "--mlflow", "false", "--checkpoint", "false",
                 "--out", str(out), *extra])


def test_rerunning_a_finished_run_is_a_no_op(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(out) == 0
    before = {f: (out / f).stat().st_mtime_ns for f in ("run.json", "metrics.csv")}
    assert _train(out) == 0
    assert "nothing to do" in capsys.readouterr().err
    assert before == {f: (out / f).stat().st_mtime_ns for f in ("run.json", "metrics.csv")}


def test_another_config_is_refused_then_overwrite_moves_the_old_record_aside(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(out) == 0
    old = (out / "metrics.csv").read_text()
    assert _train(out, "--lr", "0.01") == 2
    err = capsys.readouterr().err
    assert "holds a run of another config" in err and "--overwrite" in err and "Traceback" not in err
    assert (out / "metrics.csv").read_text() == old  # nothing touched
    assert _train(out, "--lr", "0.01", "--overwrite") == 0
    moved = list((out / ".replaced").glob("*/metrics.csv"))
    assert len(moved) == 1 and moved[0].read_text() == old
    assert json.loads((out / "run.json").read_text())["config"]["lr"] == 0.01
    from tssm.reporting.records import find_runs
    assert find_runs([tmp_path]) == [out.resolve()]  # the moved record is no run of the summary


@pytest.mark.slow  # concurrent processes
def test_two_runs_into_one_folder_at_once(tmp_path):
    out = tmp_path / "run"
    first = _popen(["--method", "gsadmm", "--epochs", "5000", "--mlflow", "false"], out)
    deadline = time.time() + 60
    while _rows(out) < 1 and time.time() < deadline:
        time.sleep(0.05)
    second = subprocess.run([sys.executable, "-m", "tssm", "train", *SMALL, "--method", "adam", "--epochs", "1",
                             "--mlflow", "false", "--out", str(out)], capture_output=True, text=True, timeout=120)
    first.terminate()
    first.communicate(timeout=120)
    assert second.returncode == 2 and "another run is writing" in second.stderr, second.stderr


def test_summary_flags_metrics_that_do_not_match_run_json(tmp_path):
    out = tmp_path / "run"
    assert _train(out) == 0
    m = pd.read_csv(out / "metrics.csv")
    m.iloc[:2].to_csv(out / "metrics.csv", index=False)  # what a later, killed run would leave
    from tssm.reporting.records import load_run
    run = load_run(out)
    assert run.status == "incomplete" and "does not match" in run.problem


def test_full_disk_ends_with_one_line_and_a_failed_record(tmp_path):
    """A file-size limit stands in for a full disk: the metrics stop fitting mid-run."""
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (12000, 12000))

    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "tssm", "train", "--dataset", "digits", "--width", "16", "--depth", "3",
                        "--epochs", "40", "--mlflow", "false", "--checkpoint", "false", "--no-progress",
                        "--out", str(out)], preexec_fn=limit, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.startswith("error: cannot write") and "Traceback" not in r.stderr, r.stderr
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    assert not list(out.glob(".*.tmp"))  # no temp file left on the full disk
