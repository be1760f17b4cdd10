"""Every bad input gets one clear, early error naming the problem and the fix."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tssm.cli import main
from tssm.config import RunConfig

BASE = ["train", "--epochs", "1", "--mlflow", "false", "--checkpoint", "false", "--no-progress", "--width", "32"]

CASES = [
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["--model", "transformer"], "unknown model 'transformer'"),
    (["--method", "lbfgs"], "unknown method 'lbfgs'"),
    (["--splits", "0"], "splits must be an integer >= 1"),
    (["--splits", "11"], "splits n=11 is out of range: this model has 10 blocks"),
    (["--method", "adam", "--splits", "2"], "use splits=1"),
    (["--rho", "0"], "rho must be a positive number"),
    (["--rho", "-1"], "rho must be a positive number"),
    (["--alpha", "0"], "alpha must be a positive number"),
    (["--tau1", "0"], "tau1 must be a positive number"),
    (["--tau2", "-5"], "tau2 must be a positive number"),
    (["--cuts", "3", "3", "--splits", "3"], "strictly increasing"),
    (["--schedule", "nightly"], "unknown schedule 'nightly'"),
    (["--dataset", "mnist", "--data-root", "{tmp}/empty", "--download", "false"], "is not on disk"),
    (["--tau2", "inf"], "tau2 must be a positive number, got inf"),
    (["--dist-timeout", "0"], "dist_timeout must be a positive number"),
    (["--seed", "18000000000000"], "seed must be below 2**31"),
    (["--method", "adam", "--rho", "10"], "'rho' is a setting of gsadmm, dladmm, not of method 'adam'"),
    (["--out", ""], "out must name a run folder, got an empty string"),
    (["--mlflow", "true", "--tracking-uri", "foo://store"], "unknown tracking URI scheme 'foo:'"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_clear_error(args, message, tmp_path, capsys):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code = main(BASE + ["--out", str(tmp_path / "run"), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ")
    assert message in err, err
    assert "Traceback" not in err


def test_missing_data_message_says_how_to_fix(tmp_path, capsys):
    main(BASE + ["--dataset", "mnist", "--data-root", str(tmp_path), "--download", "false", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "download=True" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu(tmp_path, capsys):
    assert main(BASE + ["--device", "cuda", "--out", str(tmp_path / "r")]) == 2
    assert "no CUDA GPU is visible" in capsys.readouterr().err


def test_misspelled_config_key(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dataset: digits\nepocs: 3\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    assert "did you mean 'epochs'" in capsys.readouterr().err


def test_malformed_config_file(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dataset: [digits\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    cfg.write_text("- just\n- a list\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    assert "must hold a mapping" in capsys.readouterr().err


def test_wrong_value_type():
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        RunConfig.from_dict({"epochs": "ten"})


def test_cli_subprocess_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tssm", *BASE, "--splits", "99", "--out", str(tmp_path / "r")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "out of range" in r.stderr


def test_config_file_with_flag_override_and_tags(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dataset: digits\nwidth: 32\ndepth: 4\nepochs: 3\nmlflow: false\ncheckpoint: false\n")
    out = tmp_path / "r"
    assert main(["train", "--config", str(cfg), "--epochs", "1", "--tags", "a=b", "--no-progress", "--out", str(out)]) == 0
    import json

    info = json.loads((out / "run.json").read_text())
    assert info["config"]["epochs"] == 1 and info["config"]["width"] == 32 and info["config"]["tags"] == {"a": "b"}


@pytest.mark.parametrize("text, message", [
    ("mlflow: 'false'\n", "mlflow must be true or false, got 'false'"),
    ("download: 'no'\n", "download must be true or false, got 'no'"),
    ("checkpoint: 'no'\n", "checkpoint must be true or false"),
    ("seed: true\n", "seed must be a non-negative integer, got True"),
    ("out: 123\n", "out must be a string, got 123"),
    ("cuts: '3'\n", "cuts must be a list of integers, got '3'"),
    ("cuts: [2.5]\n", "cuts must be a list of integers, got [2.5]"),
    ("tags: [a, b]\n", "tags must be a mapping"),
    ("tau2: .inf\n", "tau2 must be a positive number, got inf"),
])
def test_config_values_are_strictly_typed(text, message, tmp_path, capsys):
    """YAML strings are never taken as booleans, numbers must be finite, lists hold integers."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 1\nwidth: 8\nmlflow: false\n" * ("mlflow" not in text) + text)
    out = [] if text.startswith("out:") else ["--out", str(tmp_path / "r")]  # a flag would override it
    assert main(["train", "--config", str(cfg), "--no-progress", *out]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


def test_unreadable_config_files(tmp_path, capsys):
    (tmp_path / "bin.yaml").write_bytes(bytes(range(256)))
    for path, message in ((tmp_path / "bin.yaml", "not valid YAML"), (tmp_path, "not a file")):
        assert main(["train", "--config", str(path), "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


def test_malformed_tag_flag(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(BASE + ["--tags", "foo", "--out", str(tmp_path / "r")])
    assert e.value.code == 2 and "expected KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("where, message", [("file", "it is a file, not a folder"),
                                            ("/proc/tssm-run", "No such file or directory")])
def test_unusable_out_folder(where, message, tmp_path, capsys):
    """A file, or a place nothing can be written, as --out: one line naming the folder, and no
    MLflow run is started (so none is left RUNNING)."""
    out = tmp_path / "file" if where == "file" else Path(where)
    if where == "file":
        out.write_text("x")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = main(["train", "--dataset", "digits", "--width", "8", "--depth", "3", "--epochs", "1", "--no-progress",
                 "--tracking-uri", uri, "--experiment", "ro", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and f"error: cannot write the run folder {out}: {message}; choose another --out" in err, err
    import mlflow

    mlflow.set_tracking_uri(uri)
    assert len(mlflow.search_runs(experiment_names=["ro"])) == 0


@pytest.mark.parametrize("delay", [0.3, 0.7, 1.2])
def test_ctrl_c_during_start_up_is_one_line(delay, tmp_path):
    """Ctrl-C while torch, numpy or sklearn are still being imported: exit 4 and one line, never a
    traceback (an interrupted import can otherwise surface as a RecursionError)."""
    import signal
    import time

    p = subprocess.Popen([sys.executable, "-m", "tssm", *BASE, "--out", str(tmp_path / "r")], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as at a terminal
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    if p.returncode == 0:
        pytest.skip("the run finished before the signal")
    if p.returncode == -signal.SIGINT and f"{os.sep}tssm{os.sep}" not in err:
        # no frame of tssm in the traceback: the signal came while the interpreter itself was
        # still starting (runpy finding the module; a loaded machine), before tssm's first line
        pytest.skip("the signal came before the interpreter ran any of tssm's code")
    assert p.returncode == 4 and err.startswith("error: interrupted by the user") and "Traceback" not in err, err
