"""The pipeline's grid (tssm.grid), in-process: what every config expands into, the checks a
config meets before anything runs, and `tssm plan`. The Snakefile reads the same Grid
(tests/test_pipeline.py runs Snakemake itself)."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path

import pytest
import yaml

from tssm import grid
from tssm.config import reads
from tssm.errors import ConfigError
from tssm.solvers import SOLVERS

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "config"
SPLIT_METHODS = {name for name, solver in SOLVERS.items() if not solver.end_to_end}


def expected_grid(cfg: dict) -> set[tuple]:
    """Grid points of a config, computed independently of tssm.grid: (dataset, model, method,
    n, seed, cores), plus the variant's settings (those the method reads) for an experiment
    with a `grid:`; cores is the experiment's equal-resources budget, or None."""
    points = set()
    for exp in cfg["experiments"]:
        sweep = exp.get("grid") or {}
        for ds in exp["datasets"]:
            for m in exp["methods"]:
                own = {k: v for k, v in sweep.items() if k in reads(m)}
                variants = [tuple(zip(own, values)) for values in itertools.product(*own.values())] if sweep else [()]
                for n in (exp["splits"] if m in SPLIT_METHODS else [1]):
                    for s in exp["seeds"]:
                        points.update((ds, exp["model"], m, n, s, exp.get("cores")) + ((v,) if sweep else ())
                                      for v in variants)
    return points


def tiny_config(**changes) -> dict:
    cfg = {"name": "t", "experiments": [{"datasets": ["digits"], "model": "mlp", "methods": ["gsadmm"],
                                         "splits": [2], "seeds": [0], "epochs": 1}]}
    cfg.update(changes)
    return cfg


def config(name: str) -> dict:
    return yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())


def folders(g: grid.Grid) -> set[str]:
    return {p.name() for p in g.runs()}


def refused(cfg: dict) -> str:
    with pytest.raises(ConfigError) as e:
        grid.load(cfg)
    message = str(e.value)
    assert "\n" not in message  # one line
    return message


# ------------------------------------------------------------------------------ expansion
@pytest.mark.parametrize("name, expected", [("config", 90), ("fashion", 6), ("fashion-splits", 11), ("paper", 321),
                                            ("sweep", 54), ("sweep-quick", 27), ("fashion-reference", 7)])
def test_every_config_expands_to_its_full_grid(name, expected):
    cfg = config(name)
    assert len(expected_grid(cfg)) == expected
    g = grid.load(copy.deepcopy(cfg))
    assert len(g.runs()) == expected and not g.trials()
    swept = {e.get("name") or f"exp{i}" for i, e in enumerate(cfg["experiments"]) if e.get("grid")}
    got = {(*p.key[:6],) + ((tuple(sorted(p.sweep.items())),) if p.experiment in swept else ()) for p in g.runs()}
    want = {k[:6] + ((tuple(sorted(k[6])),) if len(k) > 6 else ()) for k in expected_grid(cfg)}
    assert got == want
    assert g.has_variants == (name in ("sweep", "sweep-quick", "fashion-reference"))


@pytest.mark.parametrize("method, splits, ranks, threads", [
    ("gsadmm", 2, 2, 1), ("gsam", 2, 2, 1), ("frozen", 2, 2, 1), ("adam", 1, 1, 2), ("sgd", 1, 1, 2)])
def test_default_config_runs_figure2_on_equal_resources(method, splits, ranks, threads):
    """The default's cores2/ runs: every method gets 2 cores, the split methods as one rank per
    subnetwork with 1 thread, sgd/adam as one process of 2 threads; the serial run of the same
    point keeps its folder and its one thread."""
    g = grid.load(config("config"))
    p = g.point("digits", "mlp", method, splits, 1, 2, "")
    assert (p.workers, p.rank_threads, p.threads) == (ranks, threads, ranks * threads)
    assert p.folder("results/default") == f"results/default/runs/digits/mlp/{method}/n{splits}/seed1/cores2"
    yaml_point = yaml.safe_load(p.point_yaml(config_name="default", data_root="data", tracking_uri="u", experiment="e"))
    assert yaml_point["threads"] == threads and yaml_point["tags"]["cores"] == "2"
    assert yaml_point["tags"]["workers"] == str(ranks)
    assert ("torch.distributed.run --standalone --nproc-per-node" in grid.launch_command("python3", p.workers)) \
        == (ranks > 1)
    serial = g.point("digits", "mlp", method, splits, 1, None, "")
    assert serial.workers == 1 and serial.rank_threads == 1 and serial.cores is None


def test_backprop_only_at_n1_and_split_methods_at_every_level():
    runs = folders(grid.load(config("fashion-splits")))
    assert {"fashion_mnist/mlp/sgd/n1/seed0", "fashion_mnist/mlp/adam/n1/seed0"} <= runs
    assert not any("/sgd/n2/" in r or "/adam/n10/" in r for r in runs)
    for m in ("gsadmm", "gsam", "frozen"):
        assert {f"fashion_mnist/mlp/{m}/n{n}/seed0" for n in (2, 5, 10)} <= runs
        assert f"fashion_mnist/mlp/{m}/n1/seed0" not in runs  # n = 1 is Adam step for step


def test_paper_config_uses_gpus_and_torchrun_for_workers():
    g = grid.load(config("paper"))
    p = g.point("cifar10", "resnet", "gsadmm", 3, 0, None, "")
    assert p.workers == 3 and p.gpus == 3 and p.settings["device"] == "cuda" and p.settings["epochs"] == 500
    assert grid.launch_command("python3", p.workers).endswith("-m torch.distributed.run --standalone "
                                                              "--nproc-per-node 3 -m tssm")
    single = g.point("mnist", "mlp", "adam", 1, 0, None, "")
    assert single.workers == 1 and single.gpus == 1
    assert grid.launch_command("python3", 1) == "python3 -m tssm"


def test_plan_says_what_it_costs():
    """config/paper.yaml: 321 jobs, the GPUs each asks for and the sum of runtime limits
    (about 8,700 GPU-hours), in one line."""
    g = grid.load(config("paper"))
    cost = g.cost()
    assert cost["jobs"] == 321 and sum(cost["gpus_per_job"].values()) == 321
    assert cost["gpus_per_job"][3] == 15 and cost["cuda"] == ["cuda"]
    assert cost["gpu_min"] == sum(p.runtime * p.gpus for p in g.points.values())
    line = grid.cost_text(g)
    assert "321 training jobs" in line and "15 jobs x 3 GPUs" in line and f"{cost['gpu_min'] / 60:.1f} GPU-hours" in line


def test_sweep_variants_get_their_folder_settings_and_tags():
    """config/sweep.yaml: gsadmm at n = 2, 5 x 16 variants, gsam x 8 (it reads no rho); frozen
    (n = 2, 5) and adam per init."""
    g = grid.load(config("sweep"))
    runs = folders(g)
    assert len(runs) == 54
    assert not any("/gsam/" in r and "rho" in r for r in runs)
    assert "fashion_mnist/mlp/gsadmm/n5/seed0/init_kaiming-rho1-scaling_paper-tau2_100" in runs
    assert {r for r in runs if "/frozen/" in r or "/adam/" in r} == {
        f"fashion_mnist/mlp/{m}/n{n}/seed0/init_{i}" for m, n in (("frozen", 2), ("frozen", 5), ("adam", 1))
        for i in ("kaiming", "demo")}
    variant = "init_demo-rho10-scaling_sample-tau2_1"
    p = g.point("fashion_mnist", "mlp", "gsadmm", 5, 0, None, variant)
    point = yaml.safe_load(p.point_yaml(config_name="sweep", data_root="data", tracking_uri="u", experiment="e"))
    assert {k: point[k] for k in ("rho", "tau2", "scaling", "init", "epochs", "width", "method", "splits")} == {
        "rho": 10, "tau2": 1, "scaling": "sample", "init": "demo", "epochs": 10, "width": 512, "method": "gsadmm",
        "splits": 5}
    tags = point["tags"]
    assert tags["variant"] == variant
    assert {k: v for k, v in tags.items() if k.startswith("variant.")} == {
        "variant.init": "demo", "variant.rho": "10", "variant.scaling": "sample", "variant.tau2": "1"}


def test_variant_names_are_stable_and_mixed_configs_keep_plain_paths():
    cfg = tiny_config()
    cfg["experiments"].append({**cfg["experiments"][0], "methods": ["gsam"], "run": {"width": 16},
                               "grid": {"tau2": [0.5, 100.0], "init": ["demo"]}})
    g = grid.load(cfg)
    # keys in alphabetical order, whatever the order in `grid:`; 100.0 is written 100
    assert folders(g) == {"digits/mlp/gsadmm/n2/seed0", "digits/mlp/gsam/n2/seed0/init_demo-tau2_0.5",
                          "digits/mlp/gsam/n2/seed0/init_demo-tau2_100"}
    assert g.has_variants


def test_tuning_plans_trials_then_every_seed_with_the_selection():
    cfg = {"name": "tune", "run": {"width": 16, "depth": 3, "val_fraction": 0.25},
           "experiments": [{"name": "t", "datasets": ["digits"], "model": "mlp", "methods": ["adam", "gsadmm"],
                            "splits": [2], "seeds": [0, 1], "epochs": 2,
                            "tuning": {"trials": 2, "epochs": 1, "seed": 7,
                                       "space": {"lr": [0.0003, 0.01], "rho": [1, 10], "gsadmm": {"lr": [0.01]}}}}]}
    g = grid.load(cfg)
    assert sorted(p.name() for p in g.trials()) == [
        "digits/mlp/adam/n1/seed7/lr0.0003", "digits/mlp/adam/n1/seed7/lr0.01",
        "digits/mlp/gsadmm/n2/seed7/lr0.01-rho1", "digits/mlp/gsadmm/n2/seed7/lr0.01-rho10"]
    assert all(p.settings["epochs"] == 1 for p in g.trials())
    finals = g.runs()
    assert sorted(p.name() for p in finals) == ["digits/mlp/adam/n1/seed0", "digits/mlp/adam/n1/seed1",
                                                "digits/mlp/gsadmm/n2/seed0", "digits/mlp/gsadmm/n2/seed1"]
    assert {(p.settings["preset"], p.settings["tuned_file"]) for p in finals} == {("tuned", "results/tune/tuned.yaml")}


def test_verdict_config_plans_presets_and_equal_tuning():
    cfg = config("verdict")
    expected = 0
    for exp in cfg["experiments"]:
        points = sum(len(exp["splits"]) if m in SPLIT_METHODS else 1 for m in exp["methods"])
        if exp.get("tuning"):  # trials per point, then every seed of every point
            expected += points * exp["tuning"]["trials"] + points * len(exp["seeds"])
        else:
            expected += points * len(exp["seeds"]) * len(exp["grid"]["preset"])
    g = grid.load(cfg)
    assert len(g.points) == expected == 452


def test_only_keeps_the_named_experiments_and_their_folders():
    """`only:` (a grid too long for one sitting) plans a part of the config: the same points,
    in the same folders, as the whole config has for those experiments, and nothing else."""
    whole = grid.load(config("verdict-full"))
    part = grid.load({**config("verdict-full"), "only": ["full-tuned"]})
    tuned = {p.name() for p in whole.runs() + whole.trials() if p.experiment == "full-tuned"}
    assert {p.name() for p in part.runs() + part.trials()} == tuned
    assert len(part.runs()) == 18 and len(part.trials()) == 36
    assert {p.name(): p.settings for p in part.runs()} == {p.name(): p.settings for p in whole.runs()
                                                            if p.experiment == "full-tuned"}
    assert "names no experiment 'full-tune': this config's experiments are full-paper" in \
        refused({**config("verdict-full"), "only": ["full-tune"]})


def test_figure_presets_name_a_preset_of_the_whole_config():
    """`figures.preset` and `figures.figure1_preset` must be a preset some run of the config has (checked on the whole
    config, so `only:` a part without it still plans); the pipeline passes it to Figure 1 only
    when the planned part has it."""
    whole = grid.load(config("verdict-full"))
    assert whole.presets == ["paper", "tuned"]
    assert grid.load({**config("verdict-full"), "only": ["full-tuned"]}).presets == ["tuned"]
    cfg = config("verdict-full")
    cfg["figures"]["figure1_preset"] = "papr"
    assert "`figures.figure1_preset: papr` names no preset of this config (its runs have paper, tuned)" in refused(cfg)
    assert "no run of it sets a preset" in refused({**config("config"), "figures": {"figure1_preset": "paper"}})
    assert "`figures.preset: tund` names no preset" in refused({**config("verdict-full"), "figures": {"preset": "tund"}})


# ------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.update(experimentz="x"), "at the top level: unknown key: 'experimentz' was unexpected (did you mean 'experiment'?)"),
    (lambda c: c["experiments"][0].update(seeeds=[1]), "at experiments[0]: unknown key: 'seeeds' was unexpected (did you mean 'seeds'?)"),
    (lambda c: c["experiments"][0].update(epochs="thirty"), "'thirty' is not of type 'integer'"),
    (lambda c: c["experiments"][0].update(methods=["gsadm"]), "'gsadm' is not one of"),
    (lambda c: c["experiments"][0].update(methods=["gsadm"]), "(did you mean 'gsadmm'?)"),
    (lambda c: c["experiments"][0].update(splits=[0]), "0 is less than the minimum of 1"),
    (lambda c: c.update(run={"widht": 64}), "at run: unknown key: 'widht' was unexpected (did you mean 'width'?)"),
    (lambda c: c.update(run={"seed": 1}), "`seed` is set by the pipeline"),
    (lambda c: c["experiments"][0].update(run={"lr": "fast"}), "'fast' is not of type"),
    (lambda c: c.pop("name"), "'name' is a required property"),
    (lambda c: c["experiments"][0].update(cores=0), "0 is less than the minimum of 1"),
    (lambda c: c["experiments"][0].update(cores="all"), "'all' is not of type 'integer'"),
])
def test_malformed_config_fails_with_one_line_naming_the_place(mutate, message):
    cfg = tiny_config()
    mutate(cfg)
    text = refused(cfg)
    assert text.startswith("Error validating config file") and message in text, text
    assert len(text) < 400


@pytest.mark.parametrize("sweep, run, message", [
    ({"scaling": ["papr"]}, {}, "'papr' is not one of"),
    ({"rho": [0]}, {}, "0 is less than or equal to the minimum of 0"),
    ({"rho": [1, 1]}, {}, "has non-unique elements"),
    ({"rho": []}, {}, "should be non-empty"),
    ({"rhoo": [1]}, {}, "unknown run setting `rhoo` (did you mean `rho`?)"),
    ({"seed": [1, 2]}, {}, "`seed` is set by the pipeline"),
    ({"rho": [1, 10]}, {"rho": 5}, "rho set in both `run` and `grid`"),
])
def test_bad_grid_fails_with_a_clear_message(sweep, run, message):
    cfg = tiny_config()
    cfg["experiments"][0].update(grid=sweep, run=run)
    assert message in refused(cfg)


@pytest.mark.parametrize("changes, message", [
    ({"workers": 2}, "`cores` and `workers` both set"),
    ({"run": {"threads": 2}}, "`threads` in `run` with `cores`"),
    ({"grid": {"threads": [1, 2]}}, "`threads` in `grid` with `cores`"),
])
def test_cores_refuses_settings_it_decides(changes, message):
    cfg = tiny_config()
    cfg["experiments"][0].update(cores=2, **changes)
    assert message in refused(cfg)


def test_the_same_point_twice_with_different_settings_is_refused():
    cfg = tiny_config()
    cfg["experiments"].append({**cfg["experiments"][0], "epochs": 2})
    assert "grid point digits/mlp/gsadmm/n2/seed0 is defined twice with different settings" in refused(cfg)
    same = tiny_config()
    same["experiments"].append(dict(same["experiments"][0]))
    assert len(grid.load(same).points) == 1  # the same settings: one job


@pytest.mark.parametrize("run, splits, point", [
    ({"n_train": 5000}, [2], "digits/mlp/gsadmm/n2/seed0"),
    ({"cuts": [3]}, [2, 3], "digits/mlp/gsadmm/n3/seed0"),
    ({}, [11], "digits/mlp/gsadmm/n11/seed0"),
    ({"n_test": 500}, [2], "digits/mlp/gsadmm/n2/seed0"),
])
def test_plan_refuses_what_training_would_in_its_words(tmp_path, run, splits, point):
    """The grid's refusal is the one `tssm train` prints for the point's settings."""
    from tssm.run import build_problem, build_stages, resolve_device

    cfg = tiny_config()
    cfg["experiments"][0].update(splits=splits, run=run)
    message = refused(cfg)
    assert f"experiment `exp0`, {point}: " in message
    settings = {"dataset": "digits", "model": "mlp", "method": "gsadmm", "splits": splits[-1], "epochs": 1, **run,
                "out": str(tmp_path), "mlflow": False}
    with pytest.raises(ConfigError) as trained:
        from tssm.config import RunConfig

        rc = RunConfig.from_dict(settings)
        build_stages(rc, build_problem(rc, resolve_device(rc.device)))
    assert message.endswith(str(trained.value)), (message, str(trained.value))


def test_dataset_and_model_facts_match_what_is_built():
    """data.ROWS and models.num_blocks are what the loader and the builder deliver."""
    from tssm.data import ROWS, load_dataset
    from tssm.models import build_model, num_blocks

    d = load_dataset("digits")
    assert ROWS["digits"] == (len(d.x_train), len(d.x_test))
    for model, shape, kw in (("mlp", (1, 8, 8), {"depth": 4}), ("cnn", (1, 8, 8), {}),
                             ("resnet", (1, 8, 8), {"residual_blocks": 2})):
        built = build_model(model, shape, 10, width=8, channels=2 if model != "mlp" else None, **kw)
        assert len(built) == num_blocks(model, **kw)


@pytest.mark.parametrize("change, message", [
    (lambda e: e["tuning"].update(trials=3), "adam has 2 candidate settings (lr) but every method gets 3 trials"),
    (lambda e: e.update(run={"val_fraction": 0.0}), "`tuning` selects on the validation split: set `val_fraction`"),
    (lambda e: e.update(grid={"rho": [1, 10]}), "`grid` and `tuning` both set"),
    (lambda e: e["tuning"]["space"].update(adam={"rho": [1]}), "tuning.space.adam names rho, which adam does not read"),
])
def test_tuning_plans_are_refused_with_a_clear_message(change, message):
    cfg = {"name": "tune", "run": {"val_fraction": 0.25},
           "experiments": [{"datasets": ["digits"], "model": "mlp", "methods": ["adam", "gsadmm"], "splits": [2],
                            "seeds": [0], "epochs": 2,
                            "tuning": {"trials": 2, "epochs": 1, "space": {"lr": [0.0003, 0.01], "rho": [1, 10]}}}]}
    change(cfg["experiments"][0])
    assert message in refused(cfg)


# ------------------------------------------------------------------------------ tssm plan
def test_tssm_plan_prints_the_grid_and_its_cost(capsys):
    from tssm.cli import main

    assert main(["plan", str(CONFIGS / "config.yaml")]) == 0
    out = capsys.readouterr().out
    assert "digits/mlp/gsadmm/n2/seed0/cores2" in out and "2 x 1" in out
    assert out.strip().splitlines()[-1].startswith("plan of `default`: 90 training jobs; 90 jobs x 0 GPUs")
    assert len(out.strip().splitlines()) == 1 + 90 + 2


def test_tssm_plan_refuses_a_bad_config_with_one_line(tmp_path, capsys):
    from tssm.cli import main

    bad = tmp_path / "bad.yaml"
    cfg = tiny_config()
    cfg["experiments"][0]["seeeds"] = [1]
    bad.write_text(yaml.safe_dump(cfg))
    assert main(["plan", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean 'seeds'?" in err
    assert main(["plan", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_grid_is_planned_in_milliseconds():
    import time

    cfg = config("verdict")
    t0 = time.perf_counter()
    grid.load(cfg)
    assert time.perf_counter() - t0 < 2.0  # 452 points, each checked as `tssm train` checks it
    assert json.dumps(cfg["figures"])  # defaults filled in


# ------------------------------------------------------------------------------ GPUs per job
def _launch(tmp_path, gpus: int, barrier: int, env: dict):
    """`python -m tssm.gpu_slots GPUS -- <child>`: the child waits until ``barrier`` children
    run at once, then prints the devices it was given."""
    import subprocess
    import sys

    child = ("import os, pathlib, sys, time; d = pathlib.Path(sys.argv[1]); (d / str(os.getpid())).touch(); "
             "t = time.time()\nwhile len(list(d.iterdir())) < int(sys.argv[2]) and time.time() - t < 60: time.sleep(0.05)\n"
             "print(os.environ.get('CUDA_VISIBLE_DEVICES'))")
    (tmp_path / "started").mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "tssm.gpu_slots", str(gpus), "--", sys.executable, "-c", child,
                             str(tmp_path / "started"), str(barrier)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def _gpu_env(tmp_path, **extra):
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")}
    return {**env, "TSSM_GPUS": "0,1,2,3", "TSSM_GPU_SLOTS": str(tmp_path / "slots"), **extra}


def test_four_concurrent_jobs_get_four_distinct_gpus(tmp_path):
    """A faked 4-GPU machine: four 1-GPU jobs running at once see four different devices."""
    procs = [_launch(tmp_path, 1, 4, _gpu_env(tmp_path)) for _ in range(4)]
    seen = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs), [p.stderr.read() for p in procs]
    assert sorted(seen) == ["0", "1", "2", "3"]


def test_two_gpu_jobs_get_disjoint_pairs_and_a_third_waits(tmp_path):
    import time

    env = _gpu_env(tmp_path)
    procs = [_launch(tmp_path, 2, 2, env) for _ in range(2)]
    seen = [set(p.communicate(timeout=120)[0].strip().split(",")) for p in procs]
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == {"0", "1", "2", "3"}
    # all four taken by a holder: a 1-GPU job waits until the holder ends
    (tmp_path / "h").mkdir()
    (tmp_path / "w").mkdir()
    holder = _launch(tmp_path / "h", 4, 99, env)
    time.sleep(1.0)
    waiting = _launch(tmp_path / "w", 1, 1, env)
    time.sleep(1.5)
    assert waiting.poll() is None  # still waiting for a GPU
    holder.kill()  # a killed run frees its GPUs (the kernel drops its locks)
    holder.communicate()
    assert waiting.communicate(timeout=60)[0].strip() in {"0", "1", "2", "3"}


def test_gpu_slots_leave_cpu_jobs_and_slurm_jobs_alone(tmp_path):
    import subprocess
    import sys

    show = [sys.executable, "-c", "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES'))"]
    run = lambda n, **env: subprocess.run([sys.executable, "-m", "tssm.gpu_slots", str(n), "--", *show],  # noqa: E731
                                          capture_output=True, text=True, env=_gpu_env(tmp_path, **env))
    assert run(0).stdout.strip() == "None"
    assert run(2, SLURM_JOB_ID="7", CUDA_VISIBLE_DEVICES="5,6").stdout.strip() == "5,6"  # SLURM placed it
    too_many = run(5)
    assert too_many.returncode == 2 and too_many.stderr.count("\n") == 1
    assert "needs 5 GPU(s) but this machine shows 4" in too_many.stderr


def test_cuda_without_a_gpu_is_one_line():
    from tssm.gpu_slots import visible_gpus

    g = grid.load(config("paper"))
    assert "asks for device cuda and up to 4 GPU(s) per job, but this machine shows 0" in g.gpu_shortfall(0)
    assert g.gpu_shortfall(4) is None and g.gpu_shortfall(2) is not None
    assert grid.load(config("config")).gpu_shortfall(0) is None
    assert visible_gpus({"TSSM_GPUS": "2"}) == ["0", "1"] and visible_gpus({"CUDA_VISIBLE_DEVICES": "3,1"}) == ["3", "1"]
