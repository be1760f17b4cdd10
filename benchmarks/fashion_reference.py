"""The core issue's reference runs on the real Fashion-MNIST (paper MLP, batch 120).

100 epochs of ``adam`` and of ``gsadmm`` n=2 (batch schedule, paper settings, and the quick
sweep's best variant: per-sample scaling with tau2 = 1), and of the ``frozen`` control at n=2;
20 epochs of ``sgd``, ``gsam`` n=2 and ``gsadmm`` n=2 with the ``epoch`` schedule; final
training and test accuracy beside the paper's training accuracy (Adam 0.981, TSSM 0.968), and the per-epoch training
time of serial gsADMM n=2 as a ratio to Adam's (same machine, same threads).

    python benchmarks/fashion_reference.py [--jobs 2] [--epochs-long 100] [--epochs-short 20] [--only NAME,...]

Writes ``results/bench/fashion_reference/{summary.csv,summary.md}``; each run's files are
under ``results/bench/fashion_reference/runs/<name>/``. Finished runs are not repeated.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

PAPER_TRAIN_ACC = {"adam": 0.981, "sgd": 0.987, "gsadmm": 0.968}


def runs(long: int, short: int) -> dict[str, list[str]]:
    return {
        "adam": ["--method", "adam", "--splits", "1", "--epochs", str(long)],
        "gsadmm-n2-batch": ["--method", "gsadmm", "--splits", "2", "--epochs", str(long)],
        "sgd": ["--method", "sgd", "--splits", "1", "--epochs", str(short)],
        "gsam-n2-batch": ["--method", "gsam", "--splits", "2", "--epochs", str(short)],
        "gsadmm-n2-epoch": ["--method", "gsadmm", "--splits", "2", "--epochs", str(short), "--schedule", "epoch",
                            "--safeguard", "0.1"],
        # The control: same split, only the last subnetwork trains.
        "frozen-n2": ["--method", "frozen", "--splits", "2", "--epochs", str(long)],
        # The best variant of the quick sweep (results/sweep-quick): per-sample scaling, tau2 = 1.
        "gsadmm-n2-batch-sample-tau2_1": ["--method", "gsadmm", "--splits", "2", "--epochs", str(long),
                                          "--scaling", "sample", "--tau2", "1"],
    }


def run_one(name: str, args: list[str], root: Path, threads: int) -> Path:
    out = root / "runs" / name
    info = out / "run.json"
    if info.exists() and json.loads(info.read_text())["status"] == "finished":
        return out
    cmd = [sys.executable, "-m", "tssm", "train", "--dataset", "fashion_mnist", "--model", "mlp", "--batch-size", "120",
           "--threads", str(threads), "--checkpoint", "false", "--no-progress", "--experiment", "fashion-reference",
           "--out", str(out), *args]
    print("running", " ".join(cmd), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "log.txt", "w") as log:
        subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
    return out


def summarize(root: Path, short: int) -> pd.DataFrame:
    rows = []
    for d in sorted((root / "runs").iterdir()):
        if not (d / "metrics.csv").exists():
            continue
        m = pd.read_csv(d / "metrics.csv")
        info = json.loads((d / "run.json").read_text()) if (d / "run.json").exists() else {"status": "running"}
        trained = m[m.epoch > 0]
        at_short = trained[trained.epoch == short]
        method = d.name.split("-")[0]
        rows.append({
            "run": d.name, "status": info["status"], "epochs": int(trained.epoch.max()) if len(trained) else 0,
            "train_acc": trained.train_acc.iloc[-1], "test_acc": trained.test_acc.iloc[-1],
            f"train_acc@{short}": at_short.train_acc.iloc[0] if len(at_short) else float("nan"),
            f"test_acc@{short}": at_short.test_acc.iloc[0] if len(at_short) else float("nan"),
            "paper_train_acc": PAPER_TRAIN_ACC.get(method, float("nan")) if "epoch" not in d.name else float("nan"),
            "sec_per_epoch": trained.epoch_time_s.median(),
            "eval_sec_per_epoch": trained.eval_time_s.median(),
            "threads": info.get("environment", {}).get("threads_per_rank"),
        })
    df = pd.DataFrame(rows)
    if {"adam", "gsadmm-n2-batch"} <= set(df.run):
        t = df.set_index("run").sec_per_epoch
        df["time_ratio_vs_adam"] = df.run.map(lambda r: t[r] / t["adam"])
    return df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/bench/fashion_reference")
    ap.add_argument("--jobs", type=int, default=2, help="runs at once (each gets --threads 1 unless --threads)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs-long", type=int, default=100)
    ap.add_argument("--epochs-short", type=int, default=20)
    ap.add_argument("--summary-only", action="store_true")
    ap.add_argument("--only", help="comma-separated run names (default: all)")
    a = ap.parse_args()
    root = Path(a.out)
    todo = runs(a.epochs_long, a.epochs_short)
    if a.only:
        only = set(a.only.split(","))
        if only - set(todo):
            ap.error(f"unknown run(s) {sorted(only - set(todo))}; choose from {sorted(todo)}")
        todo = {k: v for k, v in todo.items() if k in only}
    if not a.summary_only:
        with ThreadPoolExecutor(a.jobs) as pool:
            list(pool.map(lambda kv: run_one(kv[0], kv[1], root, a.threads), todo.items()))
    df = summarize(root, a.epochs_short)
    root.mkdir(parents=True, exist_ok=True)
    df.to_csv(root / "summary.csv", index=False)
    (root / "summary.md").write_text(df.to_markdown(index=False, floatfmt=".4g") + "\n")
    print(df.to_string(index=False))


if __name__ == "__main__":
    main()
