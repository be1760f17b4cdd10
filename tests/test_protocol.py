"""The evaluation protocol: presets, the validation split, paired differences with intervals,
and the float64 control."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from tssm.reporting import rows as summary_rows, stats, verdict
from tssm.config import RunConfig, setting_owners
from tssm.data import Dataset
from tssm.errors import ConfigError
from tssm.config import preset_values
from tssm.presets import DECLARED
from tssm.run import train
from tssm.solvers import SOLVERS

from test_core import _param_trajectory


# ----------------------------------------------------------------------------- presets
def test_paper_preset_is_the_papers_text():
    cfg = RunConfig.from_dict({"method": "gsadmm", "preset": "paper"})
    s = cfg.settings
    assert (s.alpha, s.rho, s.tau1, s.tau2) == (1.0, 1.0, 100.0, 100.0)
    assert (s.scaling, s.schedule, s.p_grad, s.q_forward, s.safeguard) == ("paper", "batch", "exact", "fresh", None)
    assert (cfg.w_optimizer, cfg.w_lr) == ("sgd", 0.01)  # W - grad/tau1


def test_demo_preset_is_the_authors_code():
    cfg = RunConfig.from_dict({"method": "gsadmm", "preset": "demo"})
    s = cfg.settings
    assert (s.rho, s.tau2, s.scaling, s.schedule, s.safeguard, cfg.init) == (10.0, 1e4, "sample", "epoch", 0.1, "demo")
    assert (cfg.w_optimizer, cfg.w_lr) == ("adam", 0.001)


def test_given_keys_override_the_preset_and_each_method_takes_what_it_reads():
    cfg = RunConfig.from_dict({"method": "gsadmm", "preset": "paper", "tau2": 1.0, "optimizer": "adam"})
    assert cfg.tau2 == 1.0 and cfg.w_optimizer == "adam" and cfg.w_lr == 0.01 and cfg.rho == 1.0
    assert cfg.preset_values()["tau2"] == 100.0  # what the preset sets, whatever overrode it
    gsam = RunConfig.from_dict({"method": "gsam", "preset": "demo"})
    assert "rho" not in gsam.preset_values() and gsam.tau2 == 1e4
    frozen = RunConfig.from_dict({"method": "frozen", "preset": "paper"})
    assert set(frozen.preset_values()) == {"optimizer", "tau1", "init"} and frozen.w_lr == 0.01
    dl = RunConfig.from_dict({"method": "dladmm", "preset": "demo"})
    assert (dl.settings.zl_init, dl.settings.zl_step, dl.settings.loss_safeguard, dl.rho) == ("labels", 4.0, True, 1e-6)
    assert RunConfig.from_dict({"method": "dladmm", "preset": "paper"}).settings == RunConfig.from_dict(
        {"method": "dladmm"}).settings


def test_every_preset_key_is_a_setting_and_every_method_knows_every_preset():
    settable = set(setting_owners())
    for name, cls in SOLVERS.items():
        assert set(cls.presets) == set(DECLARED), name
        for preset, values in cls.presets.items():
            assert set(values) <= settable, f"{name}/{preset}: {set(values) - settable}"
            RunConfig.from_dict({"method": name, "preset": preset})  # valid for the method


def test_unknown_preset_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="unknown preset 'papr'; choose one of paper, demo, tuned"):
        RunConfig.from_dict({"method": "gsadmm", "preset": "papr"})
    with pytest.raises(ConfigError, match="preset"):
        RunConfig.from_dict({"method": "gsadmm", "preset": 3})


def test_the_hash_follows_the_values_not_the_presets_name():
    by_preset = RunConfig.from_dict({"method": "gsadmm", "preset": "paper"})
    by_hand = RunConfig.from_dict({"method": "gsadmm", **preset_values("paper", "gsadmm")})
    assert by_preset.config_hash() == by_hand.config_hash()
    assert by_preset.config_hash() != RunConfig.from_dict({"method": "gsadmm"}).config_hash()


def test_run_json_and_mlflow_tags_record_the_preset(digits_cfg, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = digits_cfg(method="gsam", preset="demo", epochs=1, mlflow=True, tracking_uri=uri, experiment="p")
    info = train(cfg, progress=False)
    assert info["status"] == "finished"
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["config"]["preset"] == "demo" and saved["preset_values"]["tau2"] == 1e4
    assert "rho" not in saved["preset_values"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("p").experiment_id])
    assert run.data.tags["preset"] == "demo" and "scaling=sample" in run.data.tags["preset.set"]
    assert run.data.params["preset"] == "demo" and run.data.params["tau2"] == "10000.0"


# ----------------------------------------------------------------------------- validation split
def test_validation_rows_are_fixed_disjoint_and_never_trained_on():
    m = 100
    ids = torch.arange(m, dtype=torch.float32).view(m, 1, 1, 1)  # each row says which it is
    data = Dataset("ids", ids, torch.arange(m) % 10, ids[:5], torch.arange(5), 10)
    a, b = data.with_validation(0.2), data.with_validation(0.2)
    held, kept = a.x_val.flatten().long().tolist(), a.x_train.flatten().long().tolist()
    assert len(held) == 20 and sorted(held + kept) == list(range(m))  # a partition of the training rows
    assert kept == sorted(kept)  # the training rows keep their order
    assert held != list(range(80, 100))  # drawn at random, not the tail
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_val, ids[held].flatten().long() % 10)
    assert data.with_validation(0.0) is data
    with pytest.raises(ConfigError, match="val_fraction"):
        data.with_validation(0.001)


def test_a_run_with_validation_records_val_accuracy(digits_cfg, tmp_path):
    info = train(digits_cfg(method="adam", splits=1, epochs=2, val_fraction=0.25), progress=False)
    m = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert {"val_acc", "val_loss"} <= set(m.columns) and m["val_acc"].between(0, 1).all()
    assert info["status"] == "finished"
    row = summary_rows.summarize([tmp_path / "run"]).iloc[0]
    assert row["final_val_acc"] == m["val_acc"].iloc[-1]
    with pytest.raises(ConfigError, match=r"val_fraction must be in \[0, 1\)"):
        RunConfig.from_dict({"val_fraction": 1.0})


def test_subnormals_are_flushed_unless_asked_and_the_run_says_which(digits_cfg, tmp_path):
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush subnormals (no SSE3)")
    try:
        for flush in (True, False):
            cfg = digits_cfg(method="adam", splits=1, epochs=1, flush_denormal=flush)
            train(cfg, progress=False)
            env = json.loads((Path(cfg.out) / "run.json").read_text())["environment"]
            assert env["flush_denormal"] is flush
            tiny = torch.tensor([1e-39]) * torch.tensor([1.0])  # subnormal in float32
            assert (tiny.item() == 0.0) is flush
    finally:
        torch.set_flush_denormal(False)


# ----------------------------------------------------------------------------- paired differences
def _fake_summary(frozen: list[float], gsadmm: list[float], seeds=(0, 1, 2)) -> pd.DataFrame:
    rows = []
    for method, accs in (("frozen", frozen), ("gsadmm", gsadmm)):
        for seed, acc in zip(seeds, accs):
            rows.append({"dataset": "d", "model": "mlp", "method": method, "splits": 2, "seed": seed, "variant": "",
                         "status": "finished", "layerwise": False, "final_test_acc": acc,
                         "final_val_acc": math.nan, "final_train_acc": acc})
    rows.append({**rows[-1], "method": "adam", "splits": 1})  # end-to-end: not compared
    return pd.DataFrame(rows)


def test_paired_difference_and_its_t_interval():
    s = _fake_summary([0.50, 0.60, 0.70], [0.51, 0.62, 0.73])  # differences 1, 2, 3 points
    t = stats.paired_table(s)
    assert len(t) == 1 and t.iloc[0]["pairs"] == 3
    assert t.iloc[0]["d_final_test_acc"] == pytest.approx(2.0)
    assert t.iloc[0]["ci_final_test_acc"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)  # t_{.975,2} sd/sqrt(3)
    text = stats.paired_markdown(s)
    assert "+2.00 [-0.48, +4.48] (contains 0)" in text


def test_paired_difference_pairs_by_seed_and_says_when_zero_is_outside():
    s = _fake_summary([0.50, 0.60, 0.70], [0.55, 0.66, 0.74])  # 5, 6, 4 points
    text = stats.paired_markdown(s)
    assert "+5.00 [+2.52, +7.48] |" in text and "contains 0" not in text.split("|---")[-1]
    lone = _fake_summary([0.5, 0.6], [0.6], seeds=(0, 1))
    assert "(one pair)" in stats.paired_markdown(lone)


def test_verdict_table_shows_each_preset_its_selection_and_the_paired_difference():
    rows = []
    for preset, shift in (("paper", [0.0, 0.0, 0.0]), ("demo", [0.01, 0.02, 0.03]), ("tuned", [0.05, 0.06, 0.04])):
        s = _fake_summary([0.50, 0.60, 0.70], [a + d for a, d in zip([0.50, 0.60, 0.70], shift)])
        s["preset"] = preset
        s["variant"] = "" if preset == "tuned" else f"preset_{preset}"
        s["preset_values"] = "lr=0.001, rho=1" if preset == "tuned" else None
        rows.append(s)
    trial = rows[-1].iloc[[0]].assign(preset=None, variant="lr0.1", final_test_acc=0.99)
    text = verdict.verdict_markdown(pd.concat([*rows, trial], ignore_index=True))
    lines = {tuple(c.strip() for c in ln.split("|")[1:4]): ln for ln in text.splitlines() if ln.startswith("| ")}
    assert "+0.00 [+0.00, +0.00] (contains 0)" in lines[("gsadmm", "2", "paper")]
    assert "+2.00 [-0.48, +4.48] (contains 0)" in lines[("gsadmm", "2", "demo")]
    tuned = lines[("gsadmm", "2", "tuned")]
    assert "**+5.00 [+2.52, +7.48]**" in tuned and "lr=0.001, rho=1" in tuned
    assert "0.990" not in text  # the trial (no preset) is not in the verdict
    glance = next(ln for ln in text.splitlines() if ln.startswith("| gsadmm | 2 | 0."))  # presets side by side
    assert glance.count("Δ") == 3 and glance.endswith("Δ **+5.00 [+2.52, +7.48]** |")
    assert verdict.verdict_markdown(rows[0].assign(preset=None)) == ""


# ----------------------------------------------------------------------------- float64
def test_float64_runs_in_float64_and_n1_still_equals_adam(digits_cfg):
    ref = _param_trajectory(digits_cfg(method="adam", splits=1, dtype="float64"), 4)
    got = _param_trajectory(digits_cfg(method="gsadmm", splits=1, dtype="float64"), 4)
    assert all(p.dtype == torch.float64 for p in ref[-1])
    for a, b in zip(ref[-1], got[-1]):
        assert torch.equal(a, b)
    single = _param_trajectory(digits_cfg(method="adam", splits=1), 4)
    diff = max((a - b.double()).abs().max().item() for a, b in zip(ref[-1], single[-1]))
    assert 0 < diff < 1e-4  # the same run up to float32 rounding


def test_float64_split_run_finishes(digits_cfg):
    info = train(digits_cfg(method="gsadmm", splits=2, epochs=1, dtype="float64"), progress=False)
    assert info["status"] == "finished"


def test_float64_control_compares_the_same_start(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from float64_control import compare

    base = {"dataset": "digits", "n_train": 300, "method": "gsadmm", "splits": 2, "preset": "demo", "width": 16,
            "depth": 4, "seed": 0, "threads": 1}
    t = compare(base, 3, tmp_path)
    assert list(t["epoch"]) == [1, 2, 3]
    assert t.loc[0, "change_norm_f32"] == t.loc[0, "change_norm_f64"] == 0  # targets = own outputs until the first q-step
    assert t.loc[2, "change_norm_f64"] > 0 and -1 <= t.loc[2, "cos_change"] <= 1


def test_the_papers_cnn_takes_fashion_mnist_at_14x14():
    from tssm.models import build_model

    m = build_model("cnn", (1, 14, 14), 10, width=32, depth=1, channels=4, residual_blocks=1, init="kaiming", seed=0)
    assert m(torch.zeros(3, 1, 14, 14)).shape == (3, 10) and len(m) == 5
    assert m[2][1].in_features == 4 * 4 * 4  # 14 -> 7 -> 4 (pooling rounds up)
    with pytest.raises(ConfigError, match="at least 4x4"):
        build_model("cnn", (1, 3, 3), 10, width=8, depth=1, channels=2, residual_blocks=1, init="kaiming", seed=0)


# ----------------------------------------------------------------------------- tuning
SPACE = {"lr": [0.0003, 0.001, 0.003, 0.01], "rho": [1.0, 10.0], "tau2": [1.0, 100.0],
         "dladmm": {"rho": [1e-6, 1e-4, 1e-2, 1.0]}}


def _reads(method):
    from tssm.config import reads

    return reads(method)


def test_every_method_gets_the_same_number_of_trials_from_its_space():
    from tssm.tuning import plan_trials

    plans = {m: plan_trials(SPACE, m, _reads(m), 4, seed=0) for m in ("adam", "sgd", "frozen", "gsam", "gsadmm", "dladmm")}
    assert {m: len(p) for m, p in plans.items()} == dict.fromkeys(plans, 4)
    assert all(set(p) == {"lr"} for p in plans["adam"]) and sorted(p["lr"] for p in plans["adam"]) == SPACE["lr"]
    assert all(set(p) == {"lr", "rho", "tau2"} for p in plans["gsadmm"])
    assert len({tuple(sorted(p.items())) for p in plans["gsadmm"]}) == 4  # distinct
    assert {p["rho"] for p in plans["dladmm"]} == set(SPACE["dladmm"]["rho"])  # its own rho values
    assert plan_trials(SPACE, "gsadmm", _reads("gsadmm"), 4, seed=0) == plans["gsadmm"]  # the same draw
    with pytest.raises(ConfigError, match="adam has 4 candidate settings .* every method gets 5 trials"):
        plan_trials(SPACE, "adam", _reads("adam"), 5, seed=0)
    with pytest.raises(ConfigError, match="tuning.space.adam names rho, which adam does not read"):
        plan_trials({**SPACE, "adam": {"rho": [1.0]}}, "adam", _reads("adam"), 1, seed=0)


def test_selection_is_on_validation_accuracy_and_skips_failed_trials():
    from tssm.tuning import select

    base = {"dataset": "d", "model": "mlp", "method": "gsadmm", "splits": 2}
    rows = [{**base, "variant": "rho1", "status": "finished", "final_val_acc": 0.70, "final_test_acc": 0.99,
             "settings": {"rho": 1.0}},
            {**base, "variant": "rho10", "status": "finished", "final_val_acc": 0.80, "final_test_acc": 0.10,
             "settings": {"rho": 10.0}},
            {**base, "variant": "rho100", "status": "diverged", "final_val_acc": 0.95, "final_test_acc": 0.5,
             "settings": {"rho": 100.0}}]
    [best] = select(rows)
    assert best["trial"] == "rho10" and best["settings"] == {"rho": 10.0} and best["trials"] == 3
    with pytest.raises(ConfigError, match="no trial finished for d/mlp/gsadmm/2"):
        select(rows[2:])


def test_preset_tuned_reads_the_selection(tmp_path):
    from tssm.tuning import write_selection

    path = tmp_path / "tuned.yaml"
    write_selection([{"dataset": "digits", "model": "mlp", "method": "gsadmm", "splits": 2, "trial": "trial-1",
                      "score": 0.8, "settings": {"rho": 10.0, "lr": 0.003}, "trials": 4}], path)
    cfg = RunConfig.from_dict({"method": "gsadmm", "splits": 2, "preset": "tuned", "tuned_file": str(path)})
    assert cfg.rho == 10.0 and cfg.lr == 0.003 and cfg.preset_values() == {"rho": 10.0, "lr": 0.003}
    with pytest.raises(ConfigError, match="holds no tuned settings for digits/mlp/gsadmm/n3"):
        RunConfig.from_dict({"method": "gsadmm", "splits": 3, "preset": "tuned", "tuned_file": str(path)})
    with pytest.raises(ConfigError, match="does not exist; run the pipeline's tuning first"):
        RunConfig.from_dict({"method": "gsadmm", "preset": "tuned", "tuned_file": str(tmp_path / "none.yaml")})


def test_paired_difference_matches_the_controls_preset():
    s = _fake_summary([0.50, 0.60, 0.70], [0.51, 0.62, 0.73])
    s["preset"] = "paper"
    other = _fake_summary([0.10, 0.10, 0.10], [0.90, 0.90, 0.90])
    other["preset"] = "tuned"
    t = stats.paired_table(pd.concat([s, other], ignore_index=True))
    assert sorted(t["d_final_test_acc"].round(6)) == [2.0, 80.0]  # each against the frozen of its own preset
