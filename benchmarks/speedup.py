"""Speed benchmark: seconds per training epoch of TSSM (serial and distributed) against
backprop (one process) and pipeline-parallel backprop (GPipe), for one dataset and model.

Every configuration runs as its own subprocess (``tssm train``, ``torchrun ... -m tssm
train``, ``torchrun benchmarks/pipeline_parallel.py``) and is timed by its own training
clock (``epoch_time_s`` in its metrics.csv: the steps of an epoch, evaluation excluded).
``sec_per_epoch`` is the median over epochs 2..E when E >= 3 (the first epoch carries
warm-up), else the mean over all epochs.

Configurations (``--modes`` / ``--methods`` pick a subset):

- backprop:    adam, sgd; one process; all cores and 1 thread
- serial:      gsadmm, gsam; n = 2..4 subnetworks in one process; 1 thread and all cores
- distributed: gsadmm, gsam under torchrun; one rank per subnetwork up to --max-ranks
               (default: as many ranks as cores; on CUDA as many as GPUs, so no two ranks
               share one and every rank talks over NCCL), beyond that a contiguous group of
               subnetworks per rank; cores // ranks threads a rank
- pipeline:    GPipe backprop (Adam) over n ranks, n = 2..--max-ranks

Cuts: unless ``--cuts`` fixes them, each configuration balances its subnetworks by the FLOPs
of its own training step (``--balance compute``, the default here): with one rank per
subnetwork the slowest one sets the pace. Where n exceeds ``--max-ranks``, the serial and
distributed TSSM runs balance the ranks' groups of subnetworks instead (``balance_workers``).
``--balance params`` uses tssm's default split (the authors' demo's). The ``blocks`` column
records the split each run used.

Outputs ``OUT/speedup.csv`` (one row per configuration), ``OUT/speedup.png`` and ``.pdf``,
the runs under ``OUT/runs/``, and a table of the ratios on the terminal::

    python benchmarks/speedup.py --dataset digits --epochs 2              # smoke test
    python benchmarks/speedup.py --dataset fashion_mnist --n-train 12000 --epochs 2
    python benchmarks/speedup.py --plot-only                              # redraw from the csv

Runs are launched as the pipeline launches them (:func:`tssm.grid.launch_command`) and read
back with :func:`tssm.reporting.records.load_run` / :func:`tssm.reporting.rows.summarize`.

The paper's speed claim (Figure 2(b), ResNet on CIFAR-10, one GTX 1080 Ti; the numbers are in
:mod:`tssm.paper`): 25.8 / 24.0 / 22.0 s an epoch at n = 2 / 3 / 4 against 37.9 (SGD) and 49.9
(Adam), i.e. 1.47x / 1.58x / 1.72x faster than SGD (1.93x / 2.08x / 2.27x than Adam).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's tssm (the runs below import it from ROOT too: cwd=ROOT)

from tssm import paper  # noqa: E402
from tssm.grid import launch_command  # noqa: E402
from tssm.reporting.records import load_run  # noqa: E402
from tssm.reporting.rows import summarize  # noqa: E402

#: GPipe baseline, run as a module of this checkout (``python -m benchmarks.pipeline_parallel``).
PIPELINE_MODULE = "benchmarks.pipeline_parallel"
ALL_METHODS = ("adam", "sgd", "gsadmm", "gsam", "pipeline")
ALL_MODES = ("backprop", "serial", "distributed", "pipeline")
CSV_COLUMNS = [
    "method", "mode", "n", "ranks", "threads_per_rank", "cores_used", "sec_per_epoch", "sec_first_epoch",
    "epoch_times", "timing", "wait_s_per_rank", "epochs", "dataset", "model", "batch", "n_train", "schedule", "q_forward",
    "cuts", "balance", "blocks", "optimizer_impl", "final_train_acc",
    "final_test_acc", "target_train_acc", "time_to_target_s", "epoch_to_target", "status", "reason", "wall_s", "load_before", "load_after", "machine", "cpu_count",
    "torch", "device", "gpu", "run_dir", "command",
]


@dataclass
class Config:
    method: str  # adam, sgd, gsadmm, gsam, pipeline
    mode: str  # backprop, serial, distributed, pipeline
    n: int  # subnetworks / stages (1 for backprop)
    ranks: int
    threads_per_rank: int

    @property
    def label(self) -> str:
        thr = f"{self.threads_per_rank}thr" if self.ranks == 1 else f"{self.ranks}x{self.threads_per_rank}thr"
        if self.mode == "backprop":
            return f"{self.method} backprop {thr}"
        name = "GPipe adam" if self.mode == "pipeline" else self.method
        return f"{name} {self.mode} n={self.n} {thr}"

    @property
    def slug(self) -> str:
        return f"{self.mode}-{self.method}-n{self.n}-r{self.ranks}-t{self.threads_per_rank}"


# ------------------------------------------------------------------------------ machine


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def gpu_info(device: str) -> tuple[int, str]:
    if not device.startswith("cuda"):
        return 0, ""
    import torch

    if not torch.cuda.is_available():
        from tssm.parallel import cuda_unavailable_reason

        raise SystemExit(f"error: --device cuda asked for, but {cuda_unavailable_reason()}")
    return torch.cuda.device_count(), torch.cuda.get_device_name(0)


# ------------------------------------------------------------------------------ plan


def plan(args, cores: int, ngpu: int) -> list[Config]:
    methods, modes = set(args.methods), set(args.modes)
    thread_options = sorted(set(args.serial_threads or (1, cores)), reverse=True)
    out: list[Config] = []
    if "backprop" in modes:
        for m in ("adam", "sgd"):
            if m in methods:
                out += [Config(m, "backprop", 1, 1, t) for t in thread_options]
    if "serial" in modes:
        for m in ("gsadmm", "gsam"):
            if m in methods:
                out += [Config(m, "serial", n, 1, t) for n in args.splits for t in thread_options]
    for mode, ms in (("distributed", ("gsadmm", "gsam")), ("pipeline", ("pipeline",))):
        if mode not in modes:
            continue
        for m in ms:
            if m not in methods:
                continue
            for n in args.splits:
                # TSSM puts a contiguous group of subnetworks on each rank when n exceeds the
                # ranks; GPipe needs one rank per stage.
                ranks = min(n, args.max_ranks) if mode == "distributed" else n
                if n < 2 or ranks < 2 or ranks > args.max_ranks:
                    continue
                tpr = args.threads_per_rank or max(1, cores // ranks)
                out.append(Config(m, mode, n, ranks, tpr))
    return out


def command(cfg: Config, args, run_dir: Path) -> list[str]:
    """The run's command line: ``python -m tssm train`` or torchrun with one rank per worker
    (:func:`tssm.grid.launch_command`, as the pipeline starts runs), or the GPipe module."""
    common = ["--dataset", args.dataset, "--epochs", str(args.epochs), "--batch-size", str(args.batch),
              "--threads", str(cfg.threads_per_rank), "--device", args.device, "--out", str(run_dir),
              "--balance", args.balance, "--optimizer-impl", args.optimizer_impl, "--data-root", args.data_root]
    if args.n_train:
        common += ["--n-train", str(args.n_train)]
    if args.n_test:
        common += ["--n-test", str(args.n_test)]
    if cuts_for(cfg, args):
        common += ["--cuts", *map(str, cuts_for(cfg, args))]
    elif cfg.mode in ("serial", "distributed") and cfg.n > args.max_ranks:
        # n subnetworks on fewer ranks: balance the ranks' groups (serial runs get the same cuts)
        common += ["--balance-workers", str(args.max_ranks)]
    if cfg.mode == "pipeline":
        return [*shlex.split(launch_command(sys.executable, cfg.ranks, module=PIPELINE_MODULE)), *common,
                "--model", args.model, "--splits", str(cfg.n), "--microbatches", str(args.microbatches),
                "--optimizer", "adam", "--eval", "test"]
    # serial and backprop runs have one rank: plain `python -m tssm`; the TSSM settings only for TSSM
    # (tssm train refuses a method's setting given to another method)
    tssm_only = ["--schedule", args.schedule, "--q-forward", args.q_forward] if cfg.mode != "backprop" else []
    return [*shlex.split(launch_command(sys.executable, cfg.ranks)), "train", *common, "--model", args.model,
            "--method", cfg.method, "--splits", str(cfg.n), *tssm_only, "--seed", "0", "--mlflow", "false",
            "--checkpoint", "false", "--no-progress"]


def cuts_for(cfg: Config, args) -> list[int]:
    """The ``--cuts`` that apply to this configuration: only where n = len(cuts) + 1."""
    return list(args.cuts) if args.cuts and cfg.n == len(args.cuts) + 1 else []


def skip_reason(cfg: Config, args, ngpu: int) -> str | None:
    if args.device.startswith("cuda") and cfg.mode == "pipeline" and cfg.ranks > ngpu and not args.allow_shared_gpu:
        return f"{cfg.ranks} pipeline ranks on {ngpu} GPU(s); --allow-shared-gpu tries anyway"
    if args.device.startswith("cuda") and cfg.mode == "distributed" and cfg.ranks > ngpu and not args.allow_shared_gpu:
        return f"{cfg.ranks} ranks on {ngpu} GPU(s) would share GPUs (gloo via host memory); --allow-shared-gpu tries anyway"
    return None


# ------------------------------------------------------------------------------ run


def epoch_timings(metrics) -> tuple[list[float], list[float]]:
    """Epoch times (epochs >= 1; epoch 0 is the initial state, no training) and each rank's
    mean seconds an epoch blocked on the others (``wait_s_r<rank>``, the first epoch left out
    when there are more), from a run's metrics (:attr:`tssm.reporting.records.Run.metrics`)."""
    if metrics is None or "epoch" not in metrics or "epoch_time_s" not in metrics:
        return [], []
    trained = metrics[metrics["epoch"] >= 1]
    times = [float(t) for t in trained["epoch_time_s"]]
    wait_cols = sorted((k for k in trained.columns if k.startswith("wait_s_r")), key=lambda k: int(k[8:]))
    later = trained.iloc[1:] if len(trained) > 1 else trained
    waits = [float(later[k].mean()) for k in wait_cols]
    return times, waits


def per_epoch(times: list[float]) -> tuple[float, str]:
    if len(times) >= 3:
        return statistics.median(times[1:]), f"median of epochs 2..{len(times)}"
    return statistics.fmean(times), f"mean of {len(times)} epoch(s)"


def run_one(cfg: Config, args, env_info: dict, out: Path) -> dict:
    run_dir = out / "runs" / cfg.slug
    cmd = command(cfg, args, run_dir)
    row = {
        "method": "pipeline-adam" if cfg.method == "pipeline" else cfg.method, "mode": cfg.mode, "n": cfg.n,
        "ranks": cfg.ranks, "threads_per_rank": cfg.threads_per_rank, "cores_used": cfg.ranks * cfg.threads_per_rank,
        "epochs": args.epochs, "dataset": args.dataset, "model": args.model, "batch": args.batch,
        "n_train": args.n_train or "", "schedule": args.schedule if cfg.mode in ("serial", "distributed") else "",
        "q_forward": args.q_forward if cfg.mode in ("serial", "distributed") else "",
        "cuts": " ".join(map(str, cuts_for(cfg, args))), "balance": args.balance if cfg.n > 1 else "",
        "optimizer_impl": args.optimizer_impl, **env_info, "run_dir": str(run_dir), "command": " ".join(cmd),
    }
    reason = skip_reason(cfg, args, env_info["_ngpu"])
    row.pop("_ngpu", None)
    if reason:
        return {**row, "status": "skipped", "reason": reason}
    if args.reuse and (run_dir / "run.json").exists():
        run = load_run(run_dir)
        if run.status == "finished" and run.metrics is not None:
            return {**row, **collect(run_dir, args.target_acc), "status": "finished", "reason": "reused",
                    "wall_s": run.info.get("wall_time_s", "")}
    if run_dir.exists():
        shutil.rmtree(run_dir)
    env = {**os.environ, "OMP_NUM_THREADS": str(cfg.threads_per_rank), "MKL_NUM_THREADS": str(cfg.threads_per_rank),
           "PYTHONUNBUFFERED": "1"}
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.timeout)
        rc, log = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc, log = -1, f"timed out after {args.timeout}s\n" + str(e.stdout or "")[-2000:]
    wall = time.perf_counter() - t0
    row.update(wall_s=round(wall, 2), load_before=round(load_before, 2), load_after=round(os.getloadavg()[0], 2))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "bench.log").write_text(" ".join(cmd) + "\n\n" + log)
    if rc != 0 or not (run_dir / "metrics.csv").exists():
        tail = [ln for ln in log.strip().splitlines() if ln.strip() and not ln.startswith("W1")][-3:]
        return {**row, "status": "failed", "reason": f"exit {rc}: " + " | ".join(tail)[-600:]}
    return {**row, **collect(run_dir, args.target_acc), "status": "finished", "reason": ""}


def collect(run_dir: Path, target: float) -> dict:
    """The timing and accuracy columns of one finished run, read with :mod:`tssm.reporting`
    (time to ``target`` training accuracy on the run's own training clock, as the pipeline's)."""
    run = load_run(run_dir)
    times, waits = epoch_timings(run.metrics)
    sec, how = per_epoch(times)
    final = summarize([run], target).iloc[0]  # last value of each curve; time to target from the curve
    return {
        "blocks": "|".join(map(str, run.info.get("splits_blocks") or [])),
        "sec_per_epoch": round(sec, 4), "sec_first_epoch": round(times[0], 4), "timing": how,
        "wait_s_per_rank": " ".join(f"{w:.3f}" for w in waits),
        "epoch_times": " ".join(f"{t:.3f}" for t in times),
        "final_train_acc": _num(final["final_train_acc"]), "final_test_acc": _num(final["final_test_acc"]),
        "target_train_acc": target, "time_to_target_s": _num(final["time_to_target_s"]),
        "epoch_to_target": _num(final["epoch_to_target"]),
    }


def _num(v) -> float | str:
    try:
        x = float(v)
        return round(x, 4) if x == x else ""
    except (TypeError, ValueError):
        return ""


# ------------------------------------------------------------------------------ report


def load_rows(path: Path) -> list[dict]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("n", "ranks", "threads_per_rank", "cores_used"):
            r[k] = int(r[k])
        r["sec_per_epoch"] = float(r["sec_per_epoch"]) if r.get("sec_per_epoch") not in (None, "") else None
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def ratios(rows: list[dict]) -> list[dict]:
    """Speedups of every TSSM and pipeline configuration over the baselines.

    Baselines are the FASTEST one-process configuration of each (over the thread counts
    tried), so that a thread count that suits a small problem badly (or a loaded machine)
    does not flatter the parallel runs. ``vs_serial_same`` compares a distributed run with
    serial TSSM at the same n and the same threads per worker: its speedup divided by the
    ranks is the parallel efficiency."""
    ok = [r for r in rows if r["status"] == "finished" and r["sec_per_epoch"]]

    def best(method, mode, n=None, threads=None):
        secs = [r["sec_per_epoch"] for r in ok if r["method"] == method and r["mode"] == mode and r["ranks"] == 1
                and (n is None or r["n"] == n) and (threads is None or r["threads_per_rank"] == threads)]
        return min(secs) if secs else None

    adam, sgd = best("adam", "backprop"), best("sgd", "backprop")
    out = []
    for r in ok:
        if r["mode"] == "backprop":
            continue
        s = r["sec_per_epoch"]
        e = {"label": _label(r), "sec": s, "vs_adam": adam / s if adam else None, "vs_sgd": sgd / s if sgd else None,
             "vs_serial_same": None, "efficiency": None, "vs_serial_best": None, "paper_vs_sgd": None}
        if r["mode"] == "distributed":
            same = best(r["method"], "serial", r["n"], threads=r["threads_per_rank"])
            fastest = best(r["method"], "serial", r["n"])
            if same:
                e["vs_serial_same"] = same / s
                e["efficiency"] = same / s / r["ranks"]
            if fastest:
                e["vs_serial_best"] = fastest / s
        if r["method"] in ("gsadmm", "gsam"):
            e["paper_vs_sgd"] = paper.figure2_speedup(r["n"], "sgd")
        out.append(e)
    return out


def _label(r: dict) -> str:
    thr = f"{r['threads_per_rank']}thr" if r["ranks"] == 1 else f"{r['ranks']}x{r['threads_per_rank']}thr"
    if r["mode"] == "backprop":
        return f"{r['method']} backprop {thr}"
    name = "GPipe adam" if r["mode"] == "pipeline" else r["method"]
    cuts = f" cuts {r['cuts']}" if r.get("cuts") else (f" [{r['blocks']}]" if r.get("blocks") and int(r["n"]) > 1 else "")
    return f"{name} {r['mode']} n={r['n']}{cuts} {thr}"


def print_table(rows: list[dict], cores: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 170))
    ok = [r for r in rows if r["status"] == "finished"]
    first = ok[0] if ok else rows[0]
    t = Table(title=f"Seconds per epoch: {first['dataset']} / {first['model']}, batch {first['batch']}, "
                    f"{first['epochs']} epochs, n_train {first['n_train'] or 'all'} on {first['device']} "
                    f"({first['machine']}, {first['cpu_count']} cores)")
    target = next((r.get("target_train_acc") for r in ok if r.get("target_train_acc") not in (None, "")), "?")
    for col in ("configuration", "sec/epoch", "1st epoch", "waiting s/rank", f"s to train acc {target}",
                "train acc", "test acc", "load", "status"):
        t.add_column(col, justify="left" if col in ("configuration", "status") else "right")
    for r in rows:
        sec = f"{r['sec_per_epoch']:.3f}" if r.get("sec_per_epoch") else "-"
        status = r["status"] if r["status"] == "finished" else f"{r['status']}: {str(r.get('reason', ''))[:70]}"
        hit = _fmt(r.get("time_to_target_s"))
        hit = f"{hit} (epoch {int(float(r['epoch_to_target']))})" if hit != "-" else "not reached"
        t.add_row(_label(r), sec, _fmt(r.get("sec_first_epoch")), r.get("wait_s_per_rank") or "-", hit,
                  str(r.get("final_train_acc", "") or "-"), str(r.get("final_test_acc", "") or "-"), f"{r.get('load_before', '')}/{r.get('load_after', '')}", status)
    console.print(t)

    def f(x):
        return f"{x:.2f}x" if x else "-"

    levels = paper.FIGURE2_SPLITS

    def claimed(baseline):
        return " / ".join(f"{paper.figure2_speedup(n, baseline):.2f}x" for n in levels)

    rt = Table(title="Speedups (ratio of seconds per epoch; >1 = faster). Baselines: the fastest one-process run "
                     "(over thread counts). 'same thr': serial TSSM at the same n with the distributed run's threads "
                     "per rank; efficiency = that / ranks. "
                     f"Paper Fig. 2(b) (ResNet, CIFAR-10, one GPU): {claimed('sgd')} vs SGD at n = "
                     f"{' / '.join(map(str, levels))} ({claimed('adam')} vs Adam)")
    for col in ("configuration", "sec/epoch", "vs Adam", "vs SGD", "vs serial (same thr)", "efficiency",
                "vs serial (best)", "paper vs SGD"):
        rt.add_column(col, justify="left" if col == "configuration" else "right")
    for e in ratios(rows):
        rt.add_row(e["label"], f"{e['sec']:.3f}", f(e["vs_adam"]), f(e["vs_sgd"]), f(e["vs_serial_same"]),
                   f"{e['efficiency']:.0%}" if e["efficiency"] else "-", f(e["vs_serial_best"]), f(e["paper_vs_sgd"]))
    console.print(rt)


def _fmt(v) -> str:
    try:
        return f"{float(v):.3f}"
    except (TypeError, ValueError):
        return "-"


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    ok = [r for r in rows if r["status"] == "finished" and r["sec_per_epoch"]]
    if not ok:
        return
    df = pd.DataFrame([{**r, "configuration": _label(r)} for r in ok])
    order = {"backprop": 0, "serial": 1, "distributed": 2, "pipeline": 3}
    df["_o"] = df["mode"].map(order)
    df = df.sort_values(["_o", "method", "n", "ranks", "threads_per_rank"])
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(10, 0.38 * len(df) + 1.9))
    palette = dict(zip(order, sns.color_palette("colorblind", 4)))
    sns.barplot(data=df, y="configuration", x="sec_per_epoch", hue="mode", hue_order=list(order), palette=palette,
                dodge=False, ax=ax, orient="h")
    for cont in ax.containers:
        ax.bar_label(cont, fmt="%.2f", padding=2, fontsize=8)
    adam = df[(df["method"] == "adam") & (df["mode"] == "backprop")]
    if len(adam):
        ref = adam["sec_per_epoch"].min()
        ax.axvline(ref, color="grey", ls="--", lw=1)
        ax.text(ref, 1.0, " fastest Adam backprop", color="dimgrey", fontsize=8, va="bottom",
                transform=ax.get_xaxis_transform())
    r0 = ok[0]
    loads = [float(r[k]) for r in ok for k in ("load_before", "load_after") if str(r.get(k, "")).strip()]
    load = f", load avg {min(loads):.1f}-{max(loads):.1f}" if loads else ""
    ax.set_title(f"Training seconds per epoch: {r0['dataset']} / {r0['model']}, batch {r0['batch']}, "
                 f"n_train {r0['n_train'] or 'all'}\n{r0['device']}: {r0['machine']} ({r0['cpu_count']} cores{load}), "
                 f"torch {r0['torch']}", fontsize=10, pad=16)
    ax.set_xlabel(f"seconds per epoch ({r0['timing']}; lower is better)")
    ax.set_ylabel("")
    ax.legend(title="mode", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(out / f"speedup.{ext}", dpi=150)
    plt.close(fig)


# ------------------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--model", default="mlp")
    p.add_argument("--epochs", type=int, default=2, help="epochs a run (>= 3: the first is left out of the timing)")
    p.add_argument("--n-train", type=int, default=None, help="first K training rows only (quick runs)")
    p.add_argument("--n-test", type=int, default=None)
    p.add_argument("--data-root", default="data", help="dataset folder of every run (tssm train --data-root)")
    p.add_argument("--target-acc", type=float, default=0.8,
                   help="training accuracy of the time-to-target column (training clock, first epoch reaching it)")
    p.add_argument("--batch", type=int, default=120)
    p.add_argument("--schedule", default="batch", choices=("batch", "epoch"), help="TSSM p/q/u schedule")
    p.add_argument("--q-forward", default="fresh", choices=("fresh", "reuse"),
                   help="TSSM q-step input: a fresh forward pass (paper) or the W-step's output")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--splits", type=int, nargs="+", default=[2, 3, 4], help="subnetwork counts n")
    p.add_argument("--cuts", type=int, nargs="+", default=None,
                   help="explicit cut points (block indices) for the runs with n = len(cuts) + 1; default balanced")
    p.add_argument("--balance", choices=("params", "compute"), default="compute",
                   help="cuts without --cuts: per-step FLOPs of each method's own step (tssm.split; "
                        "GPipe and TSSM may cut differently) or parameters (tssm's default, the demo's split)")
    p.add_argument("--optimizer-impl", choices=("fused", "foreach", "forloop"), default="fused",
                   help="torch.optim implementation for every configuration")
    p.add_argument("--max-ranks", type=int, default=None,
                   help="most ranks for distributed/pipeline runs (default: the cores available; on CUDA the GPUs)")
    p.add_argument("--threads-per-rank", type=int, default=None, help="default: cores // ranks (at least 1)")
    p.add_argument("--serial-threads", type=int, nargs="+", default=None,
                   help="thread counts of the one-process runs (backprop, serial TSSM); default: 1 and all cores")
    p.add_argument("--methods", default=",".join(ALL_METHODS), help=f"comma list of {','.join(ALL_METHODS)}")
    p.add_argument("--modes", default=",".join(ALL_MODES), help=f"comma list of {','.join(ALL_MODES)}")
    p.add_argument("--microbatches", type=int, default=4, help="GPipe micro-batches per minibatch")
    p.add_argument("--allow-shared-gpu", action="store_true",
                   help="on CUDA, run tssm distributed configurations with more ranks than GPUs anyway")
    p.add_argument("--reuse", action="store_true", help="keep finished runs already under OUT/runs")
    p.add_argument("--plot-only", action="store_true", help="redraw the figure and table from OUT/speedup.csv")
    p.add_argument("--timeout", type=float, default=3600, help="seconds a configuration may take")
    p.add_argument("--out", default="results/bench")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    cores = available_cores()
    if args.plot_only:
        rows = load_rows(out / "speedup.csv")
        print_table(rows, cores)
        plot(rows, out)
        return 0
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in args.methods if m not in ALL_METHODS] + [m for m in args.modes if m not in ALL_MODES]
    if bad:
        raise SystemExit(f"error: unknown method/mode {bad}; methods: {', '.join(ALL_METHODS)}; modes: {', '.join(ALL_MODES)}")
    ngpu, gpu = gpu_info(args.device)
    if args.max_ranks is None:
        args.max_ranks = ngpu if ngpu else max(2, cores)
    import torch

    env_info = {"machine": cpu_name(), "cpu_count": cores, "torch": torch.__version__, "device": args.device,
                "gpu": gpu, "_ngpu": ngpu}
    configs = plan(args, cores, ngpu)
    if not configs:
        raise SystemExit("error: no configuration selected")
    from rich.console import Console

    console = Console(width=max(Console().width, 170))
    console.print(f"{len(configs)} configurations on {cores} cores ({env_info['machine']}), device {args.device}; "
                  f"load average {os.getloadavg()[0]:.2f}")
    rows: list[dict] = []
    for i, cfg in enumerate(configs, 1):
        console.print(f"[{i}/{len(configs)}] {cfg.label} ...", end=" ")
        row = run_one(cfg, args, dict(env_info), out)
        rows.append(row)
        msg = f"{row['sec_per_epoch']:.3f} s/epoch" if row["status"] == "finished" else f"{row['status']}: {row['reason'][:200]}"
        console.print(msg, markup=False)
        write_csv(rows, out / "speedup.csv")  # after every run, so a crash keeps what was measured
    rows = load_rows(out / "speedup.csv")
    print_table(rows, cores)
    plot(rows, out)
    console.print(f"wrote {out / 'speedup.csv'}, {out / 'speedup.png'}, {out / 'speedup.pdf'}")
    return 0 if all(r["status"] != "failed" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
