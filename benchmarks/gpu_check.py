"""One command that checks a GPU machine before the paper's grid runs on it (docs/gpu.md).

    python benchmarks/gpu_check.py                 # at most ~8 min on one GPU, ~1-2 min CPU only
    python benchmarks/gpu_check.py --out /tmp/gc   # keep the runs

Prints one table:

- the environment: GPU, driver, torch and the CUDA build, NCCL, cuDNN, TF32;
- every method for 3 epochs on CUDA against the same run on CPU (relative loss difference);
- checkpoint and resume (SIGTERM after epoch 2) equal to an uninterrupted run, on CUDA;
- 2 ranks (torchrun) equal to the serial run, on the GPU(s);
- the CNN and the ResNet at CIFAR-100's size (synthetic tensors of the real shape, all 50000
  rows) with their peak memory and time per epoch;
- with 2 or more GPUs: the NCCL exchange check, gsADMM's batch schedule with ~20 MB messages
  between two GPUs (it would hang on an unsafe message order), equal to the serial run;
- a tiny ``speedup.py --device cuda``.

Without a GPU the CPU rows run (the CPU side of every comparison, resume and 2 ranks on CPU)
and the GPU rows say "skipped: no GPU"; CI runs that part (tests/test_gpu_check.py). Exit 1
when a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

import tssm.run as run  # noqa: E402
from tssm.config import RunConfig  # noqa: E402
from tssm.data import Dataset  # noqa: E402
from tssm.errors import Interrupted  # noqa: E402
from tssm.interrupt import sigterm_after_epoch  # noqa: E402
from tssm.parallel import cuda_record, cuda_unavailable_reason, local_threads  # noqa: E402
from tssm.solvers import SOLVERS  # noqa: E402

NO_GPU = "skipped: no GPU"
#: where the GPU rows run: "cuda", or "cpu" for --rehearse (the script's own check, small sizes)
GPU = "cuda"
#: float32 after 3 epochs: CUDA and CPU kernels round differently (TF32 off); beyond this, look
RTOL_DEVICE = 1e-3
RTOL_SAME = 1e-5  # same device, same kernels: distributed vs serial, resumed vs uninterrupted
SMALL = dict(dataset="digits", width=32, depth=4, epochs=3, batch_size=64, mlflow=False, checkpoint=False, threads=1)
COLS = ["train_loss", "train_acc", "test_acc", "objective"]


class Table:
    def __init__(self):
        self.rows: list[tuple[str, str, str]] = []

    def add(self, check: str, result: str, status: str) -> None:
        self.rows.append((check, result, status))
        print(f"  {check}: {result} [{status}]", file=sys.stderr, flush=True)

    def print(self) -> None:
        w0 = max(len(r[0]) for r in self.rows)
        w1 = min(90, max(len(r[1]) for r in self.rows))
        line = f"+-{'-' * w0}-+-{'-' * w1}-+--------+"
        print(line)
        print(f"| {'check':<{w0}} | {'result':<{w1}} | status |")
        print(line)
        for check, result, status in self.rows:
            for i, part in enumerate(textwrap.wrap(result, w1) or [""]):
                print(f"| {check if i == 0 else '':<{w0}} | {part:<{w1}} | {status if i == 0 else '':<6} |")
        print(line)

    @property
    def failed(self) -> bool:
        return any(r[2] == "FAIL" for r in self.rows)


def rel_diff(a: pd.DataFrame, b: pd.DataFrame) -> float:
    cols = [c for c in COLS if c in a and c in b]
    return float(((a[cols] - b[cols]).abs() / a[cols].abs().clip(lower=1e-8)).max().max())


def train(out: Path, **settings) -> tuple[pd.DataFrame, float]:
    t0 = time.perf_counter()
    values = {**SMALL, **settings, "out": str(out)}
    if SOLVERS[values.get("method", "gsadmm")].full_batch:
        values.pop("batch_size")  # one step per epoch over all rows (dladmm)
    cfg = RunConfig.from_dict(values)
    info = run.train(cfg, progress=False)
    if info.get("status") != "finished":
        raise RuntimeError(f"{info.get('status')}: {info.get('reason')}")
    return pd.read_csv(out / "metrics.csv"), time.perf_counter() - t0


def method_settings(method: str) -> dict:
    cls = SOLVERS[method]
    return {"method": method, "splits": 1 if cls.end_to_end or cls.layerwise else 2}


# ------------------------------------------------------------------------------ the checks
def environment(table: Table, gpu: bool) -> None:
    run.set_tf32(False)
    rec = cuda_record(torch.device("cuda", 0) if gpu and GPU == "cuda" else torch.device("cpu"))
    table.add("GPU", f"{rec.get('gpu')} ({rec.get('gpu_memory_gib')} GiB), {rec.get('gpus_visible')} visible, "
                     f"CUDA_VISIBLE_DEVICES={rec['cuda_visible_devices']}" if gpu else f"none: {cuda_unavailable_reason()}",
              "ok" if gpu else "-")
    table.add("driver", str(rec["driver"] or "none"), "-")
    table.add("torch / CUDA build", f"{torch.__version__} / CUDA {torch.version.cuda}", "-")
    table.add("NCCL / cuDNN", f"{rec.get('nccl')} / {rec.get('cudnn')}" if gpu else NO_GPU, "-")
    table.add("TF32 (matmul, cuDNN)", f"{torch.backends.cuda.matmul.allow_tf32}, {torch.backends.cudnn.allow_tf32} "
                                      f"(tssm's default; --tf32 true turns both on)", "-")
    table.add("CPU cores (affinity)", str(local_threads(1)), "-")


def methods_cuda_vs_cpu(table: Table, tmp: Path, gpu: bool) -> None:
    for method in SOLVERS:
        ms = method_settings(method)
        name = f"{method} n={ms['splits']}, 3 epochs: CUDA vs CPU"
        try:
            cpu, t_cpu = train(tmp / f"m-{method}-cpu", **ms)
            if not gpu:
                table.add(name, f"CPU loss {cpu.train_loss.iloc[-1]:.4f} ({t_cpu:.1f} s); CUDA {NO_GPU}", "cpu ok")
                continue
            cuda, t_cuda = train(tmp / f"m-{method}-cuda", device=GPU, **ms)
            rel = rel_diff(cpu, cuda)
            table.add(name, f"rel. diff {rel:.1e} (loss {cpu.train_loss.iloc[-1]:.4f}; {t_cpu:.1f} s CPU, "
                            f"{t_cuda:.1f} s CUDA)", "ok" if rel < RTOL_DEVICE else "FAIL")
        except Exception as e:  # noqa: BLE001 -- a row of the table, not a traceback
            table.add(name, f"error: {str(e).splitlines()[0][:150]}", "FAIL")


def resume(table: Table, tmp: Path, device: str) -> None:
    """SIGTERM after epoch 2 of 4 (checkpointed), then the same command: equal to uninterrupted."""
    name = f"checkpoint + resume on {device.upper()} vs uninterrupted"
    settings = dict(method="gsadmm", splits=2, epochs=4, checkpoint=True, device=device)
    try:
        ref, _ = train(tmp / f"resume-{device}-ref", **settings)
        with sigterm_after_epoch(2), contextlib.suppress(Interrupted):
            train(tmp / f"resume-{device}-cut", **settings)
        cut, _ = train(tmp / f"resume-{device}-cut", **settings)
        rel = rel_diff(ref, cut)
        table.add(name, f"rel. diff {rel:.1e} over {len(cut)} epochs", "ok" if rel <= RTOL_SAME else "FAIL")
    except Exception as e:  # noqa: BLE001
        table.add(name, f"error: {str(e).splitlines()[0][:150]}", "FAIL")


def torchrun(out: Path, ranks: int, args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
           "-m", "tssm", "train", *args, "--mlflow", "false", "--checkpoint", "false", "--no-progress",
           "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def distributed_vs_serial(table: Table, tmp: Path, device: str, name: str, settings: dict) -> None:
    """2 ranks (torchrun) against one process, same config; which backend the ranks chose."""
    try:
        serial, _ = train(tmp / f"{name}-serial", device=device, **settings)
        args = [a for k, v in {**SMALL, **settings, "device": device, "threads": 1}.items()
                if k not in ("mlflow", "checkpoint") for a in (f"--{k.replace('_', '-')}", str(v))]
        t0 = time.perf_counter()
        r = torchrun(tmp / f"{name}-dist", 2, args)
        if r.returncode != 0:
            raise RuntimeError((r.stderr.strip().splitlines() or ["no output"])[-1])
        dist_m = pd.read_csv(tmp / f"{name}-dist" / "metrics.csv")
        import json

        env = json.loads((tmp / f"{name}-dist" / "run.json").read_text())["environment"]
        rel = rel_diff(serial, dist_m)
        table.add(f"2 ranks on {device.upper()} vs serial ({name})",
                  f"rel. diff {rel:.1e}, backend {env.get('backend')}, {time.perf_counter() - t0:.0f} s",
                  "ok" if rel < RTOL_SAME else "FAIL")
    except Exception as e:  # noqa: BLE001
        table.add(f"2 ranks on {device.upper()} vs serial ({name})", f"error: {str(e).splitlines()[0][:150]}", "FAIL")


def cifar100_size(table: Table, tmp: Path, rows: int) -> None:
    """The CNN and the ResNet on tensors of CIFAR-100's shape (rows x 3 x 32 x 32, 100 classes)."""
    g = torch.Generator().manual_seed(0)
    data = Dataset("cifar100", torch.rand(rows, 3, 32, 32, generator=g), torch.randint(0, 100, (rows,), generator=g),
                   torch.rand(rows // 5, 3, 32, 32, generator=g), torch.randint(0, 100, (rows // 5,), generator=g), 100)
    real = run.load_dataset
    run.load_dataset = lambda *a, **kw: data
    try:
        for model in ("cnn", "resnet"):
            name = f"{model}, CIFAR-100 size ({rows} rows), gsadmm n=2, 1 epoch"
            try:
                m, _ = train(tmp / f"cifar-{model}", dataset="cifar100", model=model, width=512, method="gsadmm",
                             splits=2, epochs=1, batch_size=128, device=GPU)
                last = m.iloc[-1]
                table.add(name, f"peak {last.peak_mem_mb:.0f} MiB over data+model, {last.epoch_time_s:.1f} s/epoch, "
                                f"loss {last.train_loss:.3f}", "ok" if pd.notna(last.train_loss) else "FAIL")
            except Exception as e:  # noqa: BLE001
                table.add(name, f"error: {str(e).splitlines()[0][:150]}", "FAIL")
    finally:
        run.load_dataset = real


def speedup(table: Table, tmp: Path) -> None:
    name = "speedup.py --device cuda (digits, 2 epochs)"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "speedup.py"), "--dataset", "digits", "--epochs", "2",
           "--device", GPU, "--methods", "adam,gsadmm", "--modes", "backprop,serial,distributed", "--splits", "2",
           "--serial-threads", "1", "--out", str(tmp / "speedup")]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT)
        with open(tmp / "speedup" / "speedup.csv") as f:
            rows = list(csv.DictReader(f))
        res = ", ".join(f"{x['method']} {x['mode']} r{x['ranks']}: "
                        + (f"{float(x['sec_per_epoch']):.2f}" if x["status"] == "finished" else x["status"])
                        for x in rows)
        table.add(name, res + " s/epoch", "ok" if r.returncode == 0 else "FAIL")
    except Exception as e:  # noqa: BLE001
        table.add(name, f"error: {str(e).splitlines()[0][:150]}", "FAIL")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    p.add_argument("--cifar-rows", type=int, default=50000, help="training rows of the CIFAR-100-sized check")
    p.add_argument("--cpu-only", action="store_true", help="treat the machine as having no GPU")
    p.add_argument("--rehearse", action="store_true",
                   help="run the GPU rows on the CPU at small sizes, as if there were 2 GPUs (checks this script)")
    args = p.parse_args(argv)
    global GPU
    gpu = (torch.cuda.is_available() and not args.cpu_only) or args.rehearse
    ngpu = 2 if args.rehearse else torch.cuda.device_count() if gpu else 0
    if args.rehearse:
        GPU, args.cifar_rows = "cpu", min(args.cifar_rows, 64)
    t0 = time.perf_counter()
    table = Table()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as scratch:
        tmp = Path(args.out or scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        environment(table, gpu and GPU == "cuda")
        methods_cuda_vs_cpu(table, tmp, gpu)
        resume(table, tmp, "cpu")
        if gpu:
            resume(table, tmp, GPU)
        else:
            table.add("checkpoint + resume on CUDA vs uninterrupted", NO_GPU, "skip")
        distributed_vs_serial(table, tmp, "cpu", "gloo", dict(method="gsadmm", splits=2))
        if gpu:
            distributed_vs_serial(table, tmp, GPU, "small", dict(method="gsadmm", splits=2))
            cifar100_size(table, tmp, args.cifar_rows)
        else:
            table.add("2 ranks on CUDA vs serial", NO_GPU, "skip")
            table.add("cnn and resnet at CIFAR-100 size, peak memory", NO_GPU, "skip")
        if ngpu >= 2:
            # gsADMM's batch schedule between two GPUs over NCCL with 2 x 640 x 4096 floats (~21 MB) per message
            distributed_vs_serial(table, tmp, GPU, "NCCL ~20 MB messages",
                                  dict(method="gsadmm", splits=2, width=512 if args.rehearse else 4096,
                                       batch_size=640, epochs=2))
        else:
            table.add("NCCL exchange check, ~20 MB messages", NO_GPU if not gpu else "skipped: needs 2 GPUs", "skip")
        if gpu:
            speedup(table, tmp)
        else:
            table.add("speedup.py --device cuda", NO_GPU, "skip")
    table.print()
    print(f"gpu_check: {len(table.rows)} rows in {time.perf_counter() - t0:.0f} s; "
          + ("FAILED" if table.failed else "no failure"))
    return 1 if table.failed else 0


if __name__ == "__main__":
    sys.exit(main())
