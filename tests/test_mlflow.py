"""MLflow record: a locked or missing store, an unreachable server, what a run carries,
the pipeline-level run, artifacts that move with results/, a tracking failure mid-run."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tssm.tracking import recorder, store
from tssm.cli import main

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--dataset", "digits", "--width", "16", "--depth", "3", "--threads", "1", "--no-progress", "--checkpoint", "false"]


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(uri, experiment):
    c = _client(uri)
    exp = c.get_experiment_by_name(experiment)
    return c.search_runs([exp.experiment_id])


_TEMPLATE: list[Path] = []


@pytest.fixture(scope="session", autouse=True)
def _store_template(tmp_path_factory):
    _TEMPLATE[:] = [tmp_path_factory.mktemp("store-template") / "mlflow.db"]


def _store(tmp_path, rel="results/mlflow.db"):
    """A new, empty sqlite store at ``tmp_path/rel`` (a copy of one made once per session:
    creating the tables takes seconds); its URI."""
    if not _TEMPLATE[0].exists():
        store.ensure_sqlite_store(f"sqlite:///{_TEMPLATE[0]}")
    db = tmp_path / rel
    if not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(_TEMPLATE[0], db)
    return f"sqlite:///{db}"


def _train(tmp_path, *args, experiment="t"):
    uri = _store(tmp_path)
    return uri, main(["train", *TINY, "--epochs", "2", "--tracking-uri", uri, "--experiment", experiment, *args])


@pytest.mark.slow  # waits out a held lock
def test_held_lock_at_start_is_retried_and_the_run_recorded(tmp_path, capfd):
    uri = _store(tmp_path, "mlflow.db")
    held = threading.Event()

    def hold():
        con = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None, check_same_thread=False)
        con.execute("BEGIN EXCLUSIVE")
        held.set()
        time.sleep(2.0)
        con.execute("COMMIT")
        con.close()

    t = threading.Thread(target=hold)
    t.start()
    held.wait()
    t0 = time.monotonic()
    code = main(["train", *TINY, "--epochs", "1", "--tracking-uri", uri, "--experiment", "locked",
                 "--out", str(tmp_path / "run")])
    t.join()
    assert code == 0
    assert time.monotonic() - t0 >= 1.5  # it did wait for the lock
    err = capfd.readouterr().err
    assert "SQL" not in err and "Traceback" not in err, err
    assert len([line for line in err.splitlines() if "lock" in line.lower()]) <= 1, err
    runs = _runs(uri, "locked")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"


@pytest.mark.slow  # concurrent processes
def test_concurrent_first_use_creates_one_store(tmp_path):
    """Four processes open a store that does not exist yet: one creates it, all record."""
    uri = f"sqlite:///{tmp_path}/new/mlflow.db"
    procs = [subprocess.Popen([sys.executable, "-m", "tssm", "train", *TINY, "--epochs", "1", "--seed", str(s),
                               "--tracking-uri", uri, "--experiment", "race", "--out", str(tmp_path / f"r{s}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"}) for s in range(4)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    assert not any("Traceback" in e or "SQL" in e for e in errs), errs
    assert len(_runs(uri, "race")) == 4
    assert not list((tmp_path / "new").glob("*.creating"))


def test_unreachable_server_is_an_error_at_start(tmp_path):
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "tssm", "train", *TINY, "--epochs", "1", "--tracking-uri",
                        "http://127.0.0.1:9", "--out", str(tmp_path / "run")], capture_output=True, text=True,
                       timeout=180)
    # no minutes of HTTP retries before the error (the bound leaves room for a loaded machine's start-up)
    assert time.monotonic() - t0 < 60
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: MLflow tracking server http://127.0.0.1:9 does not answer")
    assert not (tmp_path / "run" / "metrics.csv").exists()  # nothing trained


def test_empty_experiment_is_an_error_not_silence(tmp_path, capsys):
    uri, code = _train(tmp_path, "--out", str(tmp_path / "run"), experiment="")
    assert code == 2
    assert "experiment must be a non-empty name" in capsys.readouterr().err
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_yaml_tags_as_a_list_are_refused(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"tags": ["a", "b"]}))
    assert main(["train", "--config", str(cfg), *TINY, "--out", str(tmp_path / "run")]) == 2
    assert "tags must be a mapping" in capsys.readouterr().err


def test_run_carries_source_user_git_dataset_and_variant(tmp_path):
    out = tmp_path / "run"
    uri, code = _train(tmp_path, "--method", "gsadmm", "--rho", "10", "--tags", "variant=rho10",
                       "--out", str(out))
    assert code == 0
    [run] = _runs(uri, "t")
    tags = run.data.tags
    assert run.info.run_name == "gsadmm-n2-s0-rho10 digits/mlp"
    assert tags["mlflow.source.name"] == "tssm train" and tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.user"]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert tags["mlflow.source.git.commit"] == commit
    assert "out" not in run.data.params and "tracking_uri" not in run.data.params
    assert run.data.params["rho"] == "10.0"
    [inp] = run.inputs.dataset_inputs
    assert inp.dataset.name == "digits" and len(inp.dataset.digest) == 8
    assert json.loads(inp.dataset.profile) == {"train_rows": 1437, "test_rows": 360, "input_shape": [1, 8, 8],
                                               "num_classes": 10}
    assert "load_digits" in inp.dataset.source
    assert {t.key: t.value for t in inp.tags}["mlflow.data.context"] == "training"
    exp = _client(uri).get_experiment(run.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "tssm-bench" in exp.tags["mlflow.note.content"]
    assert exp.artifact_location == "mlflow-artifacts:/" + exp.experiment_id
    m = json.loads((out / "run.json").read_text())
    assert m["mlflow_run_id"] == run.info.run_id and m["mlflow_error"] is None
    assert {"peak_mem_mb", "peak_rss_mb"} <= set(m["final"])
    assert 0 < m["final"]["peak_mem_mb"] < m["final"]["peak_rss_mb"]


@pytest.mark.slow  # several processes
def test_artifacts_survive_moving_results(tmp_path):
    uri, code = _train(tmp_path, "--out", str(tmp_path / "results" / "run"))
    assert code == 0
    [run] = _runs(uri, "t")
    shutil.move(tmp_path / "results", tmp_path / "results2")
    new_uri = f"sqlite:///{tmp_path}/results2/mlflow.db"
    got = store.download_artifacts(new_uri, run.info.run_id, "run.json", tmp_path / "dl")
    assert json.loads(Path(got).read_text())["mlflow_run_id"] == run.info.run_id
    # and through a tracking server of the moved store, as the UI reads them
    port = 5311
    server = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", new_uri,
                               "--artifacts-destination", str(tmp_path / "results2" / "mlartifacts"),
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        import urllib.request

        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        from mlflow.tracking import MlflowClient

        dst = tmp_path / "dl2"
        dst.mkdir()
        got = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}").download_artifacts(run.info.run_id, "metrics.csv",
                                                                                        str(dst))
        assert Path(got).read_text().startswith("epoch,")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_tracking_failure_mid_run_is_marked_not_left_running(tmp_path, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    real = MlflowClient.log_batch
    calls = {"n": 0}

    def flaky(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
        if metrics:
            calls["n"] += 1
            if calls["n"] >= 2:
                raise RuntimeError("the store went away")
        return real(self, run_id, metrics=metrics, params=params, tags=tags, synchronous=synchronous)

    monkeypatch.setattr(MlflowClient, "log_batch", flaky)
    out = tmp_path / "run"
    uri, code = _train(tmp_path, "--out", str(out))
    assert code == 0  # the training and its files are fine
    monkeypatch.setattr(MlflowClient, "log_batch", real)
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if "MLflow" in line]) == 1, err
    [run] = _runs(uri, "t")
    assert run.info.status == "FAILED"
    assert "the store went away" in run.data.tags["tracking_error"]
    assert run.data.tags.get("status") is None or run.data.tags["status"] == "finished"
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "finished" and "the store went away" in info["mlflow_error"]


@pytest.mark.slow  # a whole pipeline
def test_pipeline_run_holds_summary_and_figures(tmp_path):
    cfg = {
        "name": "tiny", "experiment": "tiny-exp", "tracking_uri": "sqlite:///results/mlflow.db", "data_root": "data",
        "run": {"width": 16, "depth": 3, "threads": 1, "checkpoint": False},
        "experiments": [{"name": "main", "datasets": ["digits"], "model": "mlp", "methods": ["gsadmm", "adam"],
                         "splits": [1, 2], "seeds": [0], "epochs": 2}],
        "figures": {"figure1_splits": 2, "figure2_splits": [2]},
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    bin_ = Path(sys.executable).parent
    snakemake = [str(bin_ / "snakemake")] if (bin_ / "snakemake").exists() else [sys.executable, "-m", "snakemake"]
    env = {**os.environ}
    env.pop("MLFLOW_TRACKING_URI", None)
    r = subprocess.run([*snakemake, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                        "--configfile", str(tmp_path / "tiny.yaml"), "--cores", "2"],
                       capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    marker = json.loads((tmp_path / "results" / "tiny" / "mlflow_pipeline_run.json").read_text())
    uri = f"sqlite:///{tmp_path}/results/mlflow.db"
    runs = _runs(uri, "tiny-exp")
    pipeline = [r for r in runs if r.data.tags.get("tssm.kind") == "pipeline"]
    assert len(pipeline) == 1 and len(runs) == 4  # 3 training runs + their parent, the study run
    run = pipeline[0]
    assert run.info.run_id == marker["run_id"] and run.info.run_name == "tiny (pipeline)"
    assert run.info.status == "FINISHED" and run.data.tags["pipeline_config"] == "tiny"
    assert "|" in run.data.tags["mlflow.note.content"]  # summary.md in its description
    assert run.data.params["experiments.main.methods"] == '["gsadmm", "adam"]'
    repo = store.artifact_repository(uri, run.info.artifact_uri)
    top = {f.path for f in repo.list_artifacts()}
    assert {"config.yaml", "summary.csv", "summary.md", "summary.html", "figures"} <= top
    figs = {Path(f.path).name for f in repo.list_artifacts("figures")}
    stems = ("figure1_train_acc", "figure2_speed", "acc_vs_splits", "time_to_target", "speedup")
    assert figs == {f"{s}.{e}" for s in stems for e in ("png", "pdf")}
    # training runs of the pipeline: children of the study run, variant-free names, tag pipeline_config
    train = [r for r in runs if r.data.tags.get("tssm.kind") != "pipeline"]
    assert {r.info.run_name for r in train} == {"gsadmm-n1-s0 digits/mlp", "gsadmm-n2-s0 digits/mlp",
                                                 "adam-n1-s0 digits/mlp"}
    assert all(r.info.status == "FINISHED" and r.data.tags["pipeline_config"] == "tiny" for r in train)
    assert all(r.data.tags["mlflow.parentRunId"] == run.info.run_id for r in train)
    assert marker["adopted"] == 0  # every run found its parent through TSSM_MLFLOW_PARENT_RUN_ID


# ---------------------------------------------------------------- the experiment set-up race
RACE_WRITERS, RACE_REPEATS = 8, 20


def _race_writer(barrier, uri, out, seed, data, results):
    """One run's whole MLflow record (experiment, run, params, dataset, 3 epochs, artifacts),
    started with the other writers at one instant; reports its error (None: recorded)."""
    try:
        from tssm.config import RunConfig

        cfg = RunConfig.from_dict(dict(dataset="digits", method="gsadmm", width=16, depth=3, epochs=2, seed=seed,
                                       out=str(out), tracking_uri=uri, experiment="race",
                                       tags={"pipeline_config": "race"}))
        rec = recorder.Recorder(cfg, {})
        store.open_client(uri)  # the store's engine is warm: the writers meet at the experiment
        barrier.wait(timeout=120)
        rec.connect()
        rec.start_mlflow(dataset=data)
        for epoch in range(3):
            rec.log_epoch({"epoch": epoch, "train_acc": 0.1 * epoch})
            rec.log_pending()
        rec.finish("finished")
        results.put((seed, None))
    except BaseException as e:  # noqa: BLE001 - every failure is the test's finding
        results.put((seed, store.short_error(e)))


def _race_prepare(template, uri, premade):
    import shutil

    shutil.copy(template, store.sqlite_path(uri))
    if premade:  # as the README's test did: an experiment without tags, made before the fan-out
        _client(uri).create_experiment("race")


@pytest.mark.slow
def test_experiment_setup_race_repeated(tmp_path):
    """8 writers released at one instant (a Barrier) on a fresh store, 20 times, half of them
    with the experiment made beforehand without tags: every writer records its run, and the
    experiment holds its tags once. Before the fix 12 of 48 writers failed with
    ``UNIQUE constraint failed: experiment_tags``."""
    import multiprocessing as mp
    import types

    import torch

    ctx = mp.get_context("fork")  # mlflow is imported once, here; each store is new, so no engine is shared
    template = tmp_path / "template.db"
    store.ensure_sqlite_store(f"sqlite:///{template}")
    g = torch.Generator().manual_seed(0)
    data = types.SimpleNamespace(x_train=torch.rand(10, 1, 8, 8, generator=g), y_train=torch.arange(10),
                                 x_test=torch.rand(4, 1, 8, 8, generator=g), y_test=torch.arange(4),
                                 input_shape=(1, 8, 8), num_classes=10)
    failures, t0 = [], time.monotonic()
    for rep in range(RACE_REPEATS):
        d = tmp_path / f"rep{rep}"
        d.mkdir()
        uri = f"sqlite:///{d}/mlflow.db"
        prep = ctx.Process(target=_race_prepare, args=(template, uri, rep % 2 == 1))
        prep.start()
        prep.join()
        assert prep.exitcode == 0
        barrier, results = ctx.Barrier(RACE_WRITERS), ctx.Queue()
        procs = [ctx.Process(target=_race_writer, args=(barrier, uri, d / f"r{s}", s, data, results))
                 for s in range(RACE_WRITERS)]
        for p in procs:
            p.start()
        errors = [results.get(timeout=300) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        failures += [(rep, seed, err) for seed, err in errors if err]
        runs = _runs(uri, "race")
        assert len(runs) == RACE_WRITERS and {r.info.status for r in runs} == {"FINISHED"}, (rep, errors)
        assert all(len(_client(uri).get_metric_history(r.info.run_id, "train_acc")) == 3 for r in runs)
        exp = _client(uri).get_experiment_by_name("race")
        assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
        assert len(_client(uri).search_experiments()) == 2  # Default and race
    wall = time.monotonic() - t0
    print(f"\nrace: {RACE_REPEATS} repetitions x {RACE_WRITERS} writers = {RACE_REPEATS * RACE_WRITERS} runs, "
          f"{len(failures)} failures, {wall:.1f} s")
    assert failures == []


# ---------------------------------------------------------------- one MLflow run per run folder
def _all_runs(uri, experiment):
    """Every run of ``experiment``, deleted ones too: {run id: run}."""
    from mlflow.entities import ViewType

    c = _client(uri)
    exp = c.get_experiment_by_name(experiment)
    return {r.info.run_id: r for r in c.search_runs([exp.experiment_id], run_view_type=ViewType.ALL)}


def test_rerun_after_a_kill_before_any_checkpoint_supersedes_the_orphan(tmp_path):
    """SIGKILL mid-run with checkpoints off leaves a RUNNING MLflow run; the rerun of the folder
    trains afresh and marks that one: KILLED, tag superseded_by, deleted (restorable). One active
    run per folder, FINISHED."""
    uri = _store(tmp_path, "mlflow.db")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "tssm", "train", *TINY, "--epochs", "30", "--tracking-uri", uri,
           "--experiment", "kill", "--out", str(out)]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None and not (out / "metrics.csv").exists():
        time.sleep(0.05)
    assert p.poll() is None, "finished before it could be killed"
    p.kill()
    p.communicate(timeout=60)
    [orphan] = _all_runs(uri, "kill").values()
    assert orphan.info.status == "RUNNING"
    assert json.loads((out / recorder.RUN_MARKER).read_text())["run_id"] == orphan.info.run_id
    assert main(["train", *TINY, "--epochs", "30", "--tracking-uri", uri, "--experiment", "kill",
                 "--out", str(out)]) == 0
    [active] = _runs(uri, "kill")
    old = _all_runs(uri, "kill")[orphan.info.run_id]
    assert active.info.status == "FINISHED" and active.data.tags["supersedes"] == orphan.info.run_id
    assert old.info.status == "KILLED" and old.info.lifecycle_stage == "deleted"
    assert old.data.tags["superseded_by"] == active.info.run_id
    assert json.loads((out / "run.json").read_text())["mlflow_run_id"] == active.info.run_id


def test_overwrite_with_changed_settings_supersedes_the_finished_run(tmp_path):
    """A point re-run with another setting (--overwrite, as the pipeline does): the old record
    goes to .replaced/, its MLflow run keeps FINISHED but is marked superseded_by and deleted."""
    out = tmp_path / "run"
    uri, code = _train(tmp_path, "--method", "gsadmm", "--out", str(out))
    assert code == 0
    [first] = _runs(uri, "t")
    _, code = _train(tmp_path, "--method", "gsadmm", "--rho", "10", "--overwrite", "--out", str(out))
    assert code == 0
    [second] = _runs(uri, "t")
    old = _all_runs(uri, "t")[first.info.run_id]
    assert second.info.run_id != first.info.run_id and second.data.params["rho"] == "10.0"
    assert old.info.status == "FINISHED" and old.info.lifecycle_stage == "deleted"
    assert old.data.tags["superseded_by"] == second.info.run_id
    assert list((out / ".replaced").glob("*/run.json"))


def test_an_exit_that_skips_the_record_closes_the_run_failed(tmp_path, monkeypatch):
    """An error between the run's start and its record (a full disk, say) does not leave the
    MLflow run RUNNING: the start registers an exit hook that closes it FAILED; finish() removes it."""
    import atexit

    from tssm.config import RunConfig

    hooks = []
    monkeypatch.setattr(atexit, "register", hooks.append)
    monkeypatch.setattr(atexit, "unregister", hooks.remove)
    uri = _store(tmp_path)
    cfg = RunConfig.from_dict(dict(dataset="digits", out=str(tmp_path / "run"), tracking_uri=uri, experiment="exit"))
    rec = recorder.Recorder(cfg, {})
    rec.start_mlflow()
    [hook] = hooks
    hook()  # what the interpreter does at exit when finish() never ran
    [run] = _runs(uri, "exit")
    assert run.info.status == "FAILED" and "record was written" in run.data.tags["failure_reason"]
    rec2 = recorder.Recorder(RunConfig.from_dict({**cfg.to_dict(), "out": str(tmp_path / "run2")}), {})
    rec2.start_mlflow()
    rec2.finish("finished")
    assert hooks == [hook]  # the finished run's hook is gone


# ---------------------------------------------------------------- the pipeline as a browsable study
def test_study_nests_runs_with_the_params_they_read_and_the_results(tmp_path, monkeypatch):
    """What a user browsing the store sees: one parent per pipeline config (settings as params,
    config.yaml, then the summary and figures), the training runs its children with short
    names, filterable tags and only the params their method and model read; an edited config
    gets a new parent that takes over the children."""
    from tssm.tracking import study
    from tssm.tracking.experiment import ensure_experiment

    uri = _store(tmp_path)
    client = store.open_client(uri)
    exp = ensure_experiment(client, uri, "study", {"pipeline_config": "tiny"})
    text = yaml.safe_dump({"name": "tiny", "run": {"width": 16, "checkpoint": False},
                           "experiments": [{"name": "main", "methods": ["gsadmm", "adam"], "seeds": [0]}]})
    parent = study.open_study(client, uri, exp.experiment_id, "tiny", text, yaml.safe_load(text))
    assert study.open_study(client, uri, exp.experiment_id, "tiny", text, yaml.safe_load(text)) == parent
    monkeypatch.setenv(recorder.PARENT_ENV, parent)
    for method, n in (("gsadmm", "2"), ("adam", "1")):
        _, code = _train(tmp_path, "--method", method, "--splits", n, "--tags", "pipeline_config=tiny",
                         "--out", str(tmp_path / method), experiment="study")
        assert code == 0
    (tmp_path / "summary.csv").write_text("method,status\ngsadmm,finished\nadam,finished\n")
    (tmp_path / "summary.md").write_text("| method | acc |\n|---|---|\n| gsadmm | 0.9 |\n")
    (tmp_path / "fig.png").write_bytes(b"\x89PNG")
    study.close_study(client, uri, exp.experiment_id, "tiny", parent, [tmp_path / "summary.csv", tmp_path / "summary.md"],
                      [tmp_path / "fig.png"], {"finished": 2}, (tmp_path / "summary.md").read_text())

    runs = {r.info.run_name: r for r in _runs(uri, "study")}
    assert set(runs) == {"tiny (pipeline)", "gsadmm-n2-s0 digits/mlp", "adam-n1-s0 digits/mlp"}
    top = runs["tiny (pipeline)"]
    assert top.info.status == "FINISHED" and "mlflow.parentRunId" not in top.data.tags
    assert top.data.params["run.width"] == "16" and top.data.params["experiments.main.methods"] == '["gsadmm", "adam"]'
    assert top.data.metrics["runs_finished"] == 2 and "| gsadmm |" in top.data.tags["mlflow.note.content"]
    repo = store.artifact_repository(uri, top.info.artifact_uri)
    assert {f.path for f in repo.list_artifacts()} == {"config.yaml", "summary.csv", "summary.md", "figures"}
    (tmp_path / "dl").mkdir()
    assert yaml.safe_load(Path(repo.download_artifacts("config.yaml", str(tmp_path / "dl"))).read_text())["name"] == "tiny"
    assert [f.path for f in repo.list_artifacts("figures")] == ["figures/fig.png"]
    for name in ("gsadmm-n2-s0 digits/mlp", "adam-n1-s0 digits/mlp"):
        child = runs[name]
        assert child.data.tags["mlflow.parentRunId"] == parent
        assert {"method", "splits", "dataset", "model", "seed"} <= set(child.data.tags)
        assert child.data.tags["tssm.kind"] == "train" and "--artifacts-destination" in child.data.tags["mlflow.note.content"]
        params = child.data.params
        assert "None" not in params.values() and not {"channels", "residual_blocks", "out", "tags"} & set(params)
        assert params["width"] == "16" and params["depth"] == "3"
    assert runs["gsadmm-n2-s0 digits/mlp"].data.params["rho"] == "1.0"
    assert not {"rho", "cuts", "balance"} & set(runs["adam-n1-s0 digits/mlp"].data.params)
    assert runs["adam-n1-s0 digits/mlp"].data.params["lr"] == "0.001"  # unset: the rate it used

    # the config edited (a seed added): the pipeline's last step makes a new parent, which takes
    # over the children; a run started with the old id follows superseded_by
    edited = text.replace("seeds:\n  - 0", "seeds:\n  - 0\n  - 1")
    assert edited != text
    info = study.close_study(client, uri, exp.experiment_id, "tiny", parent, [tmp_path / "summary.csv"], [],
                             {"finished": 2}, None, edited, yaml.safe_load(edited))
    new = info["run_id"]
    assert new != parent
    _, code = _train(tmp_path, "--method", "adam", "--splits", "1", "--seed", "1", "--tags", "pipeline_config=tiny",
                     "--out", str(tmp_path / "adam1"), experiment="study")  # PARENT_ENV still names the old one
    assert code == 0
    children = [r for r in _runs(uri, "study") if r.data.tags.get("tssm.kind") == "train"]
    assert len(children) == 3 and all(r.data.tags["mlflow.parentRunId"] == new for r in children)
    old = _all_runs(uri, "study")[parent]
    assert old.info.lifecycle_stage == "deleted" and old.data.tags["superseded_by"] == new
    assert _client(uri).get_run(new).data.params["experiments.main.seeds"] == "[0, 1]"


def test_system_metrics_switch_from_the_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    uri, code = _train(tmp_path, "--system-metrics", "true", "--epochs", "40", "--out", str(tmp_path / "run"))
    assert code == 0
    [run] = _runs(uri, "t")
    assert any(k.startswith("system/") for k in run.data.metrics), sorted(run.data.metrics)
    assert "system_metrics" not in run.data.params


def test_ui_command_serves_the_artifacts_next_to_the_store():
    assert store.ui_command("sqlite:///results/mlflow.db") == [
        "mlflow", "ui", "--backend-store-uri", "sqlite:///results/mlflow.db",
        "--artifacts-destination", "results/mlartifacts"]


def test_ui_launcher_names_the_command_and_the_runs_table(tmp_path, capsys):
    from tssm.tracking import ui

    assert ui.main(["--store", str(tmp_path / "none.db"), "--print"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no MLflow store at")
    uri, code = _train(tmp_path, "--out", str(tmp_path / "run"))
    assert code == 0
    capsys.readouterr()
    assert ui.main(["--store", str(store.sqlite_path(uri)), "--print"]) == 0
    out = capsys.readouterr().out
    assert f"--artifacts-destination {tmp_path}/results/mlartifacts" in out
    assert "/runs?workflowType=machine_learning" in out
