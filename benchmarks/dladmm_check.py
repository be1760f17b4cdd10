"""dlADMM measured once: accuracy, seconds per iteration and peak memory (not a test).

Runs dlADMM (tssm.solvers.dladmm) on full batches for a number of iterations and prints a
table: final training and test accuracy of the composed network, seconds per iteration, the
process's peak resident memory above what it held before dlADMM started (VmHWM - VmRSS from
/proc/self/status, CPU) or torch.cuda.max_memory_allocated (CUDA), beside the estimate of
``estimate_memory_bytes``. Each configuration runs in its own process so that peaks do not mix.

    python benchmarks/dladmm_check.py                      # the digits matrix
    python benchmarks/dladmm_check.py --dataset fashion_mnist --width 512 --depth 10 \\
        --inits demo --variants paper --iters 100 --root data --log results/bench/dladmm/fm.csv

Variants: ``paper`` (the defaults: rho 1e-6, t0 = 1 at every backtracking call, forward-pass
z_L, no safeguard), ``code`` (the authors' code's choices: z_L from the labels, FISTA step 4,
the rho safeguard; with init ``demo`` = their N(0, 0.1) weights), ``adaptive`` (paper, but
backtracking starts from the last accepted t / 2).

Writes ``results/bench/dladmm/check.csv`` (git-ignored); ``--log`` also writes every iteration.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "paper": {},
    "code": {"zl_init": "labels", "zl_step": 4.0, "safeguard": True},
    "adaptive": {"backtrack_start": "adaptive"},
}
FIELDS = ["dataset", "n_train", "width", "depth", "init", "variant", "iters", "train_acc", "test_acc",
          "train_loss", "train_acc_it10", "train_acc_it50", "s_per_iter", "peak_mib", "estimate_mib",
          "state_mib", "final_rho", "residual", "threads"]


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _warm_up(torch, D, device) -> None:
    """Run every kind of kernel once on tiny tensors, so lazily loaded code is in the baseline."""
    from tssm.models import build_model

    x = torch.rand(8, 1, 2, 2, device=device)
    y = torch.arange(8, device=device) % 2
    st = D.init_state(build_model("mlp", (1, 2, 2), 2, width=3, depth=3).to(device), x, y)
    D.iterate(st, x, y)
    D.network_loss(st, x, y)


def run_one(cfg: dict) -> dict:
    """One configuration in this process; returns a row of FIELDS."""
    import torch

    from tssm.data import load_dataset
    from tssm.models import build_model
    from tssm.solvers import dladmm as D

    torch.set_num_threads(cfg["threads"])
    device = torch.device(cfg["device"])
    ds = load_dataset(cfg["dataset"], cfg["root"], download=False, device=device)
    if cfg.get("n_train"):
        ds = ds.subset(cfg["n_train"], None)
    model = build_model("mlp", ds.input_shape, ds.num_classes, width=cfg["width"], depth=cfg["depth"],
                        init=cfg["init"], seed=cfg["seed"]).to(device)
    settings = D.DLADMMSettings(**VARIANTS[cfg["variant"]])
    x, y = ds.x_train, ds.y_train
    sizes = [x[0].numel()] + [cfg["width"]] * (cfg["depth"] - 1) + [ds.num_classes]
    _warm_up(torch, D, device)  # load the kernels' libraries before the baseline is taken
    rss0 = _status_kib("VmRSS")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    st = D.init_state(model, x, y, settings)
    log = []
    acc_at = {}
    t_iter = 0.0
    for k in range(1, cfg["iters"] + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        info = D.iterate(st, x, y)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t_iter += time.perf_counter() - t0
        if cfg.get("log") or k in (10, 50):
            loss, acc = D.network_loss(st, x, y)
            acc_at[k] = acc
            if cfg.get("log"):
                _, test_acc = D.network_loss(st, ds.x_test, ds.y_test)
                log.append({"iter": k, "train_loss": loss, "train_acc": acc, "test_acc": test_acc,
                            "residual": D.residual(st, x), "rho": info["rho"], "seconds": t_iter})
                _write(cfg["log"], log, list(log[0]))
                print(f"  it {k}: train acc {acc:.4f} test acc {test_acc:.4f} loss {loss:.4f} "
                      f"{t_iter / k:.2f} s/it", flush=True)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        peak = (_status_kib("VmHWM") - rss0) * 1024
    loss, train_acc = D.network_loss(st, x, y)
    _, test_acc = D.network_loss(st, ds.x_test, ds.y_test)
    mib = 2.0**20
    return {
        "dataset": cfg["dataset"], "n_train": len(y), "width": cfg["width"], "depth": cfg["depth"],
        "init": cfg["init"], "variant": cfg["variant"], "iters": cfg["iters"],
        "train_acc": round(train_acc, 4), "test_acc": round(test_acc, 4), "train_loss": round(loss, 4),
        "train_acc_it10": round(acc_at.get(10, float("nan")), 4), "train_acc_it50": round(acc_at.get(50, float("nan")), 4),
        "s_per_iter": round(t_iter / cfg["iters"], 3), "peak_mib": round(peak / mib, 1),
        "estimate_mib": round(D.estimate_memory_bytes(sizes, len(y), x.dtype) / mib, 1),
        "state_mib": round(D.state_nbytes(st) / mib, 1), "final_rho": st.rho,
        "residual": round(D.residual(st, x), 3), "threads": cfg["threads"],
    }


def _write(path: str | os.PathLike, rows: list[dict], fields: list[str]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits")
    p.add_argument("--root", default="data")
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--widths", default="128,512")
    p.add_argument("--depth", type=int, default=10)
    p.add_argument("--inits", default="kaiming,demo")
    p.add_argument("--variants", default="paper")
    p.add_argument("--extra", default="128:kaiming:code,128:demo:code,128:kaiming:adaptive,128:demo:adaptive",
                   help="more width:init:variant runs (digits matrix); '' for none")
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log", default=None, help="CSV of every iteration (single configuration only)")
    p.add_argument("--out", default="results/bench/dladmm/check.csv")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print("RESULT " + json.dumps(run_one(json.loads(a.one))), flush=True)
        return
    base = dict(dataset=a.dataset, root=a.root, n_train=a.n_train, depth=a.depth, iters=a.iters,
                threads=a.threads, device=a.device, seed=a.seed, log=a.log)
    cfgs = [dict(base, width=int(w), init=i, variant=v)
            for w in a.widths.split(",") for i in a.inits.split(",") for v in a.variants.split(",")]
    for spec in filter(None, a.extra.split(",")):
        w, i, v = spec.split(":")
        cfgs.append(dict(base, width=int(w), init=i, variant=v))
    rows = []
    for cfg in cfgs:
        print(f"running {cfg['dataset']} width {cfg['width']} depth {cfg['depth']} init {cfg['init']} "
              f"variant {cfg['variant']}", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(cfg)], capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]),
                                       # glibc: give every large block back on free, so that peak RSS
                                       # follows the live tensors instead of the heap's high-water mark
                                       MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0"))
        out = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not out:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            continue
        rows.append(json.loads(out[-1][len("RESULT "):]))
        print("  ", rows[-1], flush=True)
        _write(a.out, rows, FIELDS)
    try:
        from tabulate import tabulate

        print(tabulate(rows, headers="keys", tablefmt="github"))
    except ImportError:
        for r in rows:
            print(r)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
