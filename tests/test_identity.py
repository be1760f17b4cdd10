"""The run identity (config hash) covers exactly what changes a run's numbers; the preset is
resolved once; a checkpoint of other code is not resumed silently (docs/reliability.md)."""

import json
import shutil

import numpy as np
import pytest

from tssm import checkpoint, run
from tssm.cli import main
from tssm.config import RunConfig
from tests.test_data import write_idx_set

SMALL = ["--dataset", "digits", "--width", "16", "--depth", "3", "--threads", "1", "--no-progress", "--mlflow", "false"]


def test_hash_ignores_what_a_method_does_not_read_and_execution_knobs():
    dl = RunConfig.from_dict({"method": "dladmm"})
    assert not {"batch_size", "lr", "optimizer_impl", "dist_timeout"} & set(dl.hyperparameters())
    gs = RunConfig.from_dict({"method": "gsadmm"})
    assert {"batch_size", "lr"} <= set(gs.hyperparameters())
    assert gs.config_hash() == gs.replace(dist_timeout=5.0).config_hash()
    assert gs.config_hash() != gs.replace(batch_size=60).config_hash()
    assert gs.config_hash() == gs.replace(out="elsewhere", threads=1, experiment="x").config_hash()


def test_hash_covers_the_data_content_not_its_path(tmp_path):
    for d in ("a", "b"):
        write_idx_set(tmp_path / d, "MNIST")
    a = RunConfig.from_dict({"dataset": "mnist", "data_root": str(tmp_path / "a")})
    b = a.replace(data_root=str(tmp_path / "b"))
    assert a.config_hash() == b.config_hash()  # the same files in another folder: the same run
    write_idx_set(tmp_path / "b", "MNIST", labels=lambda p, n: ((np.arange(n) + 3) % 10).astype(np.uint8))
    assert a.config_hash() != b.config_hash()  # other labels, same shapes: another run


def test_preset_is_resolved_once(tmp_path):
    from tssm.tuning import write_selection

    path = tmp_path / "tuned.yaml"

    def select(rho):
        write_selection([{"dataset": "digits", "model": "mlp", "method": "gsadmm", "splits": 2, "trial": "t",
                          "score": 0.8, "settings": {"rho": rho}, "trials": 2}], path)

    select(10.0)
    cfg = RunConfig.from_dict({"method": "gsadmm", "splits": 2, "preset": "tuned", "tuned_file": str(path)})
    select(99.0)  # the tuning changes its selection while the run trains
    assert cfg.rho == 10.0 and cfg.preset_values() == {"rho": 10.0}  # the record says what trained
    path.unlink()
    assert cfg.preset_values() == {"rho": 10.0}  # and never reads the file again


def _interrupt_at(epoch: int, monkeypatch):
    def update(self, e, row):
        if e == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(run.ProgressBar, "update", update)


def test_checkpoint_of_other_code_is_refused_then_overwrite_restarts(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    args = ["train", *SMALL, "--epochs", "3", "--out", str(out)]
    with monkeypatch.context() as m:
        _interrupt_at(2, m)
        assert main(args) == 4  # interrupted after epoch 2's checkpoint
    assert (out / "checkpoint" / "rank0.pt").exists()
    monkeypatch.setattr(checkpoint, "code_version", lambda: "f" * 40)  # the code changed meanwhile
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "was written by code" in err and "--overwrite" in err and "Traceback" not in err
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "failed" and "CheckpointError" in record["reason"]
    assert main([*args, "--overwrite"]) == 0
    assert "--overwrite starts the run again" in capsys.readouterr().err
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "finished" and record["epochs_done"] == 4  # epochs 0..3, from the start
    assert record["data"]["rows"] == {"train": 1437, "test": 360} and record["data"]["input_shape"] == [1, 8, 8]


def test_same_settings_on_other_data_is_not_nothing_to_do(tmp_path, monkeypatch, capsys):
    from tests.test_data import V_TEST, V_TRAIN
    from tssm import data as data_module
    from tssm.data import DatasetSpec

    monkeypatch.setitem(data_module.SPECS, "mnist", DatasetSpec(10, 1, 28, V_TRAIN, V_TEST))
    write_idx_set(tmp_path / "d1", "MNIST")
    shutil.copytree(tmp_path / "d1", tmp_path / "d2")
    out = tmp_path / "run"
    base = ["train", *SMALL, "--dataset", "mnist", "--download", "false", "--epochs", "1", "--checkpoint", "false",
            "--out", str(out)]
    assert main([*base, "--data-root", str(tmp_path / "d1")]) == 0
    assert main([*base, "--data-root", str(tmp_path / "d2")]) == 0  # a copy: nothing to do
    assert "nothing to do" in capsys.readouterr().err
    write_idx_set(tmp_path / "d2", "MNIST", labels=lambda p, n: ((np.arange(n) + 1) % 10).astype(np.uint8))
    assert main([*base, "--data-root", str(tmp_path / "d2")]) == 2
    err = capsys.readouterr().err
    assert "differs in: the data files' content" in err and "--overwrite" in err
