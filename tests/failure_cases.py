"""The failure-case table: every failure class of issues #14 and #24 and the README's bad-input
table, run as a user would, each case one or a few small ``tssm train`` processes (digits, tiny
or real-size fake data files) in a temporary folder.

For each case it records the exit code, the first line of stderr (the user's message), what was
kept (run.json status, metric rows, MLflow run statuses) and whether that is the expected
behaviour: the expected exit code, a substring of the message, no traceback, and the case's own
check (nothing lost, nothing left RUNNING, no code run, within the time limit).

Every case is a test of the slow tier (tests/test_failure_cases.py):

    pytest -m slow tests/test_failure_cases.py              # all cases, ~10 minutes on 2 cores
    pytest -m slow tests/test_failure_cases.py -k dataset   # the cases whose name matches

and the same cases print as a table (docs/reliability.md):

    python tests/failure_cases.py [--only NAME]             # writes results/failure_cases.{csv,md}
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import re
import gzip
import json
import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_data import idx_bytes, mnist_labels, write_mnist_gz, write_mnist_raw  # noqa: E402
from tests.test_errors import CASES as BAD_INPUT, BASE as BAD_INPUT_BASE  # noqa: E402
from tests.test_grid import tiny_config as _tiny_config  # noqa: E402
from tests.test_pipeline import snakemake, write_config  # noqa: E402

TINY = ["--dataset", "digits", "--width", "16", "--depth", "4", "--threads", "1", "--no-progress"]
OFF = ["--mlflow", "false", "--checkpoint", "false"]
EXPERIMENT = "fc"
NONZERO = "non-zero"
#: Flags (and values) every command has; left out of the table's short command.
_HIDDEN = {**dict(zip(TINY[::2], TINY[1::2])), "--no-progress": None, "--mlflow": "false", "--checkpoint": "false"}


@dataclass
class Proc:
    """One finished process of a case."""

    cmd: str
    code: int
    stderr: str
    secs: float


@dataclass
class Outcome:
    """What a case produced: the process that answers it, what was kept, and a problem its own
    check found (None: none)."""

    proc: Proc
    kept: str
    problem: str | None = None


@dataclass
class Case:
    name: str
    code: int | str  # an exit status, or NONZERO
    message: str  # must appear in stderr ("" for none)
    run: Callable[["Ctx"], Outcome]
    max_secs: float = 120.0


CASES: list[Case] = []


def case(name: str, code: int | str, message: str = "", max_secs: float = 120.0):
    def register(fn):
        CASES.append(Case(name, code, message, fn, max_secs))
        return fn
    return register


def _ctrl_c_reaches() -> None:
    """A child started from a background job inherits SIGINT ignored: restore it, so that Python
    turns SIGINT into KeyboardInterrupt as at a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Ctx:
    """A case's temporary folder and its ways of running tssm there."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.uri = f"sqlite:///{tmp}/mlflow.db"
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": self.uri}

    def short(self, args: list[str]) -> str:
        shown, i = [], 0
        while i < len(args):
            flag = args[i]
            if flag in _HIDDEN and _HIDDEN[flag] is None:
                i += 1
            elif flag in _HIDDEN and i + 1 < len(args) and args[i + 1] == _HIDDEN[flag]:
                i += 2
            else:
                shown.append(flag)
                i += 1
        return " ".join(shlex.quote(a) for a in shown).replace(str(self.tmp), "$T")

    def argv(self, args: list[str]) -> list[str]:
        return [sys.executable, "-m", "tssm", *args]

    def tssm(self, *args: str, env: dict | None = None, timeout: float = 180, **kw) -> Proc:
        t0 = time.time()
        try:
            r = subprocess.run(self.argv(list(args)), capture_output=True, text=True, timeout=timeout,
                               env=env or self.env, **kw)
            code, err = r.returncode, r.stderr
        except subprocess.TimeoutExpired as e:
            code, err = 124, f"(timed out after {timeout:g} s) " + (e.stderr or b"").decode(errors="replace")
        return Proc("tssm " + self.short(list(args)), code, err, time.time() - t0)

    def popen(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        p = subprocess.Popen(self.argv(list(args)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env or self.env, start_new_session=True, preexec_fn=_ctrl_c_reaches)
        p.started = time.time()  # type: ignore[attr-defined]
        return p

    def torchrun(self, wrapper_body: str, timeout: float = 120) -> Proc:
        """torchrun with 2 ranks, each running ``wrapper_body`` (sh; $RANK is set)."""
        wrapper = self.tmp / "wrap.sh"
        wrapper.write_text("#!/bin/sh\n" + wrapper_body)
        wrapper.chmod(0o755)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
               "--rdzv-endpoint", "localhost:0", "--no-python", str(wrapper)]
        t0 = time.time()
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env)
            code, err = r.returncode, r.stderr
        except subprocess.TimeoutExpired:
            code, err = 124, f"(timed out after {timeout:g} s)"
        return Proc("", code, err, time.time() - t0)

    def yaml(self, text: str) -> str:
        path = self.tmp / "c.yaml"
        path.write_text(text)
        return str(path)


# ---------------------------------------------------------------------------- what was kept
def rows(out: Path) -> int:
    try:
        return max(0, len((out / "metrics.csv").read_text().strip().splitlines()) - 1)
    except OSError:
        return 0


def wait_rows(out: Path, n: int, p: subprocess.Popen, limit: float = 90) -> None:
    deadline = time.time() + limit
    while rows(out) < n and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun's ranks run in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_all(p: subprocess.Popen) -> None:
    """SIGKILL ``p``'s ranks, then ``p`` (torchrun)."""
    for pid in descendants(p.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    stop(p)


def stop(p: subprocess.Popen, sig: int = signal.SIGKILL) -> Proc:
    with_ok = p.poll() is None
    if with_ok:
        os.killpg(p.pid, sig)
    _, err = p.communicate(timeout=120)
    return Proc("", p.returncode, err, time.time() - getattr(p, "started", time.time()))


def run_status(out: Path) -> str:
    try:
        return json.loads((out / "run.json").read_text()).get("status", "?")
    except FileNotFoundError:
        return "none"
    except (OSError, ValueError):
        return "unreadable"


def mlflow_runs(uri: str) -> Counter:
    """Status counts of the runs of the cases' experiment in ``uri`` (empty: no store/experiment)."""
    from mlflow.tracking import MlflowClient

    db = uri[len("sqlite:///"):]
    if uri.startswith("sqlite:///") and not Path(db).exists():
        return Counter()
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return Counter()
    return Counter(r.info.status for r in client.search_runs([exp.experiment_id]))


def mlflow_steps(uri: str) -> list[list[int]]:
    """Per run, the sorted steps of ``train_time_s`` (one per epoch)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    return [sorted(m.step for m in client.get_metric_history(r.info.run_id, "train_time_s"))
            for r in client.search_runs([exp.experiment_id])]


def kept(out: Path | None, uri: str | None = None) -> str:
    parts = []
    if out is not None:
        parts.append(f"run.json {run_status(out)}, {rows(out)} rows")
    if uri is not None:
        runs = mlflow_runs(uri)
        parts.append("MLflow " + (", ".join(f"{s} x{n}" for s, n in sorted(runs.items())) or "no run"))
    return "; ".join(parts)


def no_running(uri: str) -> str | None:
    return "an MLflow run is left RUNNING" if mlflow_runs(uri).get("RUNNING") else None


# ---------------------------------------------------------------------------- data loss
@case("rerun a finished run into its own --out", 0, "nothing to do")
def _rerun_finished(c: Ctx) -> Outcome:
    out = c.tmp / "r"
    args = ["train", *TINY, *OFF, "--epochs", "2", "--out", str(out)]
    c.tssm(*args)
    before = (out / "metrics.csv").stat().st_mtime_ns
    p = c.tssm(*args)
    changed = (out / "metrics.csv").stat().st_mtime_ns != before
    return Outcome(p, kept(out), "metrics.csv was rewritten" if changed else None)


@case("--overwrite a finished run, killed midway", NONZERO)
def _overwrite_killed(c: Ctx) -> Outcome:
    from tssm.reporting.records import load_run

    out = c.tmp / "r"
    c.tssm("train", *TINY, *OFF, "--epochs", "2", "--out", str(out))
    p = c.popen("train", *TINY, *OFF, "--epochs", "500", "--overwrite", "--out", str(out))
    deadline = time.time() + 90
    while not list((out / ".replaced").glob("*/run.json")) and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)  # the old record's 3 rows must not count as the new run's
    wait_rows(out, 3, p)
    proc = stop(p)
    proc.cmd = "tssm train --epochs 500 --overwrite (SIGKILL)"
    moved = list((out / ".replaced").glob("*/run.json"))
    status = load_run(out).status
    problem = (None if status != "finished" and len(moved) == 1 else
               f"summary status {status}, {len(moved)} record(s) moved aside")
    return Outcome(proc, kept(out) + f"; summary: {status}; old record in .replaced/", problem)


@case("two configs into one --out at once", 2, "another run is writing")
def _two_at_once(c: Ctx) -> Outcome:
    out = c.tmp / "r"
    first = c.popen("train", *TINY, *OFF, "--method", "gsadmm", "--epochs", "5000", "--out", str(out))
    wait_rows(out, 1, first)
    p = c.tssm("train", *TINY, *OFF, "--method", "adam", "--epochs", "1", "--out", str(out))
    stopped = stop(first, signal.SIGTERM)
    ok = stopped.code == 4 and run_status(out) == "interrupted"
    return Outcome(p, kept(out) + " (the first run's, stopped by SIGTERM)",
                   None if ok else f"first run exited {stopped.code}, status {run_status(out)}")


@case("another config into a finished run's --out", 2, "holds a run of another config")
def _other_config(c: Ctx) -> Outcome:
    out = c.tmp / "r"
    c.tssm("train", *TINY, *OFF, "--epochs", "2", "--out", str(out))
    old = (out / "metrics.csv").read_text()
    p = c.tssm("train", *TINY, *OFF, "--epochs", "2", "--lr", "0.01", "--out", str(out))
    return Outcome(p, kept(out), None if (out / "metrics.csv").read_text() == old else "old metrics changed")


@case("sqlite store locked when the run starts", 0)
def _locked_store(c: Ctx) -> Outcome:
    from tssm.tracking.store import ensure_sqlite_store

    ensure_sqlite_store(c.uri)
    held = threading.Event()

    def hold():
        con = sqlite3.connect(c.uri[len("sqlite:///"):], timeout=30)
        con.execute("BEGIN EXCLUSIVE")
        held.set()
        time.sleep(4)
        con.rollback()
        con.close()

    t = threading.Thread(target=hold)
    t.start()
    held.wait()
    out = c.tmp / "r"
    p = c.tssm("train", *TINY, "--checkpoint", "false", "--epochs", "2", "--experiment", EXPERIMENT, "--out", str(out))
    t.join()
    p.cmd += " (store locked 4 s)"
    noisy = any(w in p.stderr for w in ("warning", "SQL", "Traceback"))
    runs = mlflow_runs(c.uri)
    ok = runs == Counter(FINISHED=1) and not noisy
    return Outcome(p, kept(out, c.uri), None if ok else f"MLflow {dict(runs)}, stderr {p.stderr[:200]!r}")


@case("Ctrl-C while a new sqlite store is created, then rerun", 0)
def _interrupted_store(c: Ctx) -> Outcome:
    out = c.tmp / "r"
    args = ["train", *TINY, "--checkpoint", "false", "--epochs", "2", "--experiment", EXPERIMENT, "--out", str(out)]
    first = c.popen(*args)
    deadline = time.time() + 60
    while not list(c.tmp.glob("*.creating")) and not list(c.tmp.glob("*.lock")) and time.time() < deadline:
        time.sleep(0.01)
    first.send_signal(signal.SIGINT)
    f = stop(first, signal.SIGINT)
    p = c.tssm(*args)
    p.cmd = f"SIGINT during store creation (exit {f.code}), then " + p.cmd
    runs = mlflow_runs(c.uri)
    return Outcome(p, kept(out, c.uri), None if runs.get("FINISHED") == 1 and not runs.get("RUNNING") else f"{dict(runs)}")


@case("two first runs on a fresh store at once", 0)
def _fresh_store_race(c: Ctx) -> Outcome:
    t0 = time.time()
    ps = [c.popen("train", *TINY, "--checkpoint", "false", "--epochs", "2", "--seed", str(s), "--experiment",
                  EXPERIMENT, "--out", str(c.tmp / f"r{s}")) for s in (0, 1)]
    done = [Proc("", p.wait(timeout=180), p.communicate()[1], 0.0) for p in ps]
    p = Proc("2 x tssm train --seed S --out $T/rS (fresh store)", max(d.code for d in done),
             "".join(d.stderr for d in done), time.time() - t0)
    runs = mlflow_runs(c.uri)
    return Outcome(p, kept(None, c.uri), None if runs == Counter(FINISHED=2) else f"{dict(runs)}")


@case("resume with another --tracking-uri", 0, "was logged to")
def _moved_store(c: Ctx) -> Outcome:
    out, second = c.tmp / "r", f"sqlite:///{c.tmp}/second.db"
    args = ["train", *TINY, "--method", "gsadmm", "--epochs", "30", "--experiment", EXPERIMENT, "--out", str(out)]
    first = c.popen(*args)
    wait_rows(out, 4, first)
    stop(first)
    p = c.tssm(*args, "--tracking-uri", second)
    p.cmd = "SIGKILL, then " + p.cmd
    steps = mlflow_steps(second)
    ok = steps == [list(range(31))] and mlflow_runs(c.uri) == Counter(KILLED=1)
    return Outcome(p, f"{kept(out, second)} (all 31 epochs); first store: {kept(None, c.uri)[7:]}",
                   None if ok else f"second store steps {steps}, first {dict(mlflow_runs(c.uri))}")


@case("--experiment ''", 2, "experiment must be a non-empty name")
def _empty_experiment(c: Ctx) -> Outcome:
    out = c.tmp / "r"
    p = c.tssm("train", *TINY, "--epochs", "1", "--experiment", "", "--out", str(out))
    return Outcome(p, kept(out))


@case("YAML tags: [a, b]", 2, "tags must be a mapping")
def _yaml_tags(c: Ctx) -> Outcome:
    p = c.tssm("train", "--config", c.yaml("tags: [a, b]\nepochs: 1\n"), *TINY, "--out", str(c.tmp / "r"))
    return Outcome(p, kept(c.tmp / "r", c.uri))


@case("restart from a bad checkpoint (garbage bytes)", 0, "ignoring unusable checkpoint")
def _bad_checkpoint(c: Ctx) -> Outcome:
    out = c.tmp / "r"
    (out / "checkpoint").mkdir(parents=True)
    (out / "checkpoint" / "rank0.pt").write_bytes(os.urandom(2000))
    p = c.tssm("train", *TINY, "--epochs", "2", "--experiment", EXPERIMENT, "--out", str(out))
    return Outcome(p, kept(out, c.uri), no_running(c.uri))


@case("restart from another config's checkpoint", 2, "holds a run of another config")
def _changed_checkpoint(c: Ctx) -> Outcome:
    out = c.tmp / "r"
    first = c.popen("train", *TINY, "--epochs", "500", "--rho", "2", "--mlflow", "false", "--out", str(out))
    wait_rows(out, 3, first)
    stop(first)
    p = c.tssm("train", *TINY, "--epochs", "2", "--experiment", EXPERIMENT, "--out", str(out))
    return Outcome(p, kept(out, c.uri), no_running(c.uri))


@case("read-only --out (/proc)", 2, "cannot write the run folder")
def _readonly_out(c: Ctx) -> Outcome:
    p = c.tssm("train", *TINY, "--epochs", "1", "--experiment", EXPERIMENT, "--out", "/proc/tssm-run")
    return Outcome(p, kept(None, c.uri), no_running(c.uri))


@case("--out is a file", 2, "cannot write the run folder")
def _file_out(c: Ctx) -> Outcome:
    (c.tmp / "f").write_text("x")
    p = c.tssm("train", *TINY, "--epochs", "1", "--experiment", EXPERIMENT, "--out", str(c.tmp / "f"))
    return Outcome(p, kept(None, c.uri), no_running(c.uri))


@case("full disk mid-run (RLIMIT_FSIZE)", 2, "cannot write")
def _full_disk(c: Ctx) -> Outcome:
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (12000, 12000))

    out = c.tmp / "r"
    p = c.tssm("train", *TINY, *OFF, "--depth", "3", "--epochs", "40", "--out", str(out), preexec_fn=limit)
    p.cmd += " (files capped at 12 kB)"
    left = list(out.glob(".*.tmp"))
    ok = run_status(out) == "failed" and not left
    return Outcome(p, kept(out), None if ok else f"status {run_status(out)}, temp files {left}")


# ---------------------------------------------------------------------------- wrong results
def _mismatch(flag: str, values: tuple[str, str]) -> Callable[[Ctx], Outcome]:
    def run(c: Ctx) -> Outcome:
        base = [a for a in TINY + OFF]
        extra = "" if flag == "--epochs" else "--epochs 2"
        body = (f'if [ "$RANK" = 0 ]; then v={values[0]}; else v={values[1]}; fi\n'
                f'exec {sys.executable} -m tssm train {" ".join(base)} --method gsadmm {extra} '
                f'{"--splits 2" if flag != "--splits" else ""} {flag} $v --out {c.tmp / "r"}\n')
        p = c.torchrun(body)
        p.cmd = f"torchrun, rank 0 {flag} {values[0]}, rank 1 {flag} {values[1]}"
        p.stderr = "\n".join(line for line in p.stderr.splitlines() if line.startswith("error:")) or p.stderr
        return Outcome(p, kept(c.tmp / "r"), None if run_status(c.tmp / "r") == "none" else "a run.json was written")
    return run


for _flag, _values in (("--lr", ("0.001", "0.002")), ("--seed", ("0", "1")), ("--splits", ("2", "3")),
                       ("--epochs", ("2", "3"))):
    case(f"torchrun ranks with different {_flag}", NONZERO, f"different settings: {_flag[2:]} (rank 0:",
         max_secs=60)(_mismatch(_flag, _values))

for _text, _message in (("mlflow: 'false'", "mlflow must be true or false, got 'false'"),
                        ("download: 'no'", "download must be true or false, got 'no'"),
                        ("checkpoint: 'no'", "checkpoint must be true or false"),
                        ("seed: true", "seed must be a non-negative integer, got True"),
                        ("out: 123", "out must be a string, got 123"),
                        ("cuts: '3'", "cuts must be a list of integers, got '3'"),
                        ("cuts: [2.5]", "cuts must be a list of integers, got [2.5]")):
    def _yaml_case(c: Ctx, text=_text) -> Outcome:
        out = [] if text.startswith("out:") else ["--out", str(c.tmp / "r")]
        p = c.tssm("train", "--config", c.yaml(f"epochs: 1\n{text}\n"), *TINY, *out)
        p.cmd = f"tssm train --config c.yaml  # {text}"
        return Outcome(p, kept(c.tmp / "r"))
    case(f"YAML {_text}", 2, _message)(_yaml_case)


@case("--tau2 inf", 2, "tau2 must be a positive number, got inf")
def _tau2_inf(c: Ctx) -> Outcome:
    return Outcome(c.tssm("train", *TINY, *OFF, "--tau2", "inf", "--out", str(c.tmp / "r")), kept(c.tmp / "r"))


# ---------------------------------------------------------------------------- hangs
@case("rank 1 whose MASTER_PORT is held by another program", 2, "could not join the process group", max_secs=30)
def _held_port(c: Ctx) -> Outcome:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(8)
        port = holder.getsockname()[1]
        env = {**c.env, "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port)}
        p = c.tssm("train", *TINY, *OFF, "--method", "gsadmm", "--splits", "2", "--dist-timeout", "10",
                   "--out", str(c.tmp / "r"), env=env, timeout=120)
    p.cmd = "RANK=1 MASTER_PORT=<held> " + p.cmd
    return Outcome(p, kept(c.tmp / "r"))


@case("unreachable tracking server", 2, "does not answer", max_secs=30)
def _unreachable_server(c: Ctx) -> Outcome:
    p = c.tssm("train", *TINY, "--epochs", "1", "--tracking-uri", "http://10.255.255.1:5000",
               "--out", str(c.tmp / "r"), timeout=300)
    return Outcome(p, kept(c.tmp / "r"))


@case("serial checkpoint resumed under torchrun", NONZERO, "checkpoints", max_secs=60)
def _serial_then_torchrun(c: Ctx) -> Outcome:
    out = c.tmp / "r"
    args = f"{' '.join(TINY)} --mlflow false --method gsadmm --splits 2 --epochs 500 --dist-timeout 30 --out {out}"
    first = c.popen("train", *args.split())
    wait_rows(out, 3, first)
    stop(first)
    p = c.torchrun(f"exec {sys.executable} -m tssm train {args}\n")
    p.cmd = "serial run killed, then torchrun 2 ranks, same command"
    p.stderr = "\n".join(line for line in p.stderr.splitlines() if line.startswith("error:")) or p.stderr
    return Outcome(p, kept(out))


# ---------------------------------------------------------------------------- tracebacks
def _mnist(c: Ctx) -> Path:
    root = c.tmp / "data"
    write_mnist_raw(root, "MNIST")
    return root


@case("label out of range (fake IDX)", 2, "labels from 0 to 12")
def _bad_label(c: Ctx) -> Outcome:
    root = _mnist(c)
    labels = mnist_labels(int.from_bytes((root / "MNIST/raw/train-labels-idx1-ubyte").read_bytes()[4:8], "big"), 0)
    labels[3] = 12
    (root / "MNIST/raw/train-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    p = c.tssm("train", *TINY, *OFF, "--dataset", "mnist", "--data-root", str(root), "--download", "false",
               "--out", str(c.tmp / "r"))
    return Outcome(p, kept(c.tmp / "r"))


@case("corrupted IDX magic", 2, "could not be read")
def _bad_magic(c: Ctx) -> Outcome:
    root = _mnist(c)
    f = root / "MNIST/raw/train-images-idx3-ubyte"
    f.write_bytes(b"\0\0\0\0" + f.read_bytes()[4:])
    p = c.tssm("train", *TINY, *OFF, "--dataset", "mnist", "--data-root", str(root), "--download", "false",
               "--out", str(c.tmp / "r"))
    return Outcome(p, kept(c.tmp / "r"), "names no assertion" if "AssertionError" in p.stderr else None)


@case("truncated Debian .gz (fashion_mnist)", 2, "truncated or corrupt")
def _truncated_gz(c: Ctx) -> Outcome:
    src = c.tmp / "debian"
    write_mnist_gz(src)
    gz = src / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[: len(gz.read_bytes()) // 2])
    p = c.tssm("train", *TINY, *OFF, "--dataset", "fashion_mnist", "--data-root", str(c.tmp / "data"),
               "--download", "false", "--out", str(c.tmp / "r"), env={**c.env, "TSSM_FASHION_MNIST_DIR": str(src)})
    return Outcome(p, kept(c.tmp / "r"))


@case("a torch file that is not a checkpoint", 0, "ignoring unusable checkpoint")
def _not_a_checkpoint(c: Ctx) -> Outcome:
    import torch

    out = c.tmp / "r"
    (out / "checkpoint").mkdir(parents=True)
    torch.save({"weights": torch.zeros(3)}, out / "checkpoint" / "rank0.pt")
    p = c.tssm("train", *TINY, "--mlflow", "false", "--epochs", "2", "--out", str(out))
    return Outcome(p, kept(out))


@case("a tampered checkpoint (pickle that runs code)", 0, "ignoring unusable checkpoint")
def _tampered_checkpoint(c: Ctx) -> Outcome:
    import pickle

    out, marker = c.tmp / "r", c.tmp / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (out / "checkpoint").mkdir(parents=True)
    import torch

    torch.save({"config_hash": Evil()}, out / "checkpoint" / "rank0.pt", pickle_module=pickle)
    p = c.tssm("train", *TINY, "--mlflow", "false", "--epochs", "2", "--out", str(out))
    return Outcome(p, kept(out) + ("; CODE RAN" if marker.exists() else "; no code ran"),
                   "the checkpoint ran code" if marker.exists() else None)


@case("2-rank checkpoint resumed serially", 0, "ignoring unusable checkpoint")
def _two_rank_then_serial(c: Ctx) -> Outcome:
    out = c.tmp / "r"
    args = f"{' '.join(TINY)} --mlflow false --method gsadmm --splits 2 --epochs 60 --out {out}"
    wrapper = c.tmp / "wrap.sh"  # started here, not with Ctx.torchrun: it is killed midway
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m tssm train {args}\n")
    wrapper.chmod(0o755)
    tr = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--rdzv-backend",
                           "c10d", "--rdzv-endpoint", "localhost:0", "--no-python", str(wrapper)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=c.env, start_new_session=True)
    wait_rows(out, 4, tr)
    kill_all(tr)
    had = sorted(p.name for p in (out / "checkpoint").glob("rank*.pt"))
    p = c.tssm("train", *args.split(), timeout=300)
    p.cmd = f"torchrun killed ({', '.join(had)}), then the same command serially"
    return Outcome(p, kept(out), None if run_status(out) == "finished" and rows(out) == 61 else "not finished")


@case("Ctrl-C during start-up", 4, "interrupted by the user before the run started")
def _ctrl_c_startup(c: Ctx) -> Outcome:
    p = c.popen("train", *TINY, *OFF, "--epochs", "2", "--out", str(c.tmp / "r"))
    time.sleep(1.5)
    proc = stop(p, signal.SIGINT)
    proc.cmd = "tssm train ... (SIGINT after 1.5 s)"
    return Outcome(proc, kept(c.tmp / "r"))


@case("seed 1.8e13", 2, "seed must be below 2**31")
def _huge_seed(c: Ctx) -> Outcome:
    return Outcome(c.tssm("train", *TINY, *OFF, "--seed", "18000000000000", "--out", str(c.tmp / "r")), kept(c.tmp / "r"))


@case("binary file as --config", 2, "not valid YAML")
def _binary_config(c: Ctx) -> Outcome:
    (c.tmp / "bin.yaml").write_bytes(bytes(range(256)))
    return Outcome(c.tssm("train", "--config", str(c.tmp / "bin.yaml"), "--out", str(c.tmp / "r")), kept(c.tmp / "r"))


@case("a directory as --config", 2, "not a file")
def _dir_config(c: Ctx) -> Outcome:
    return Outcome(c.tssm("train", "--config", str(c.tmp), "--out", str(c.tmp / "r")), kept(c.tmp / "r"))


@case("--tags foo", 2, "expected KEY=VALUE")
def _bad_tag(c: Ctx) -> Outcome:
    return Outcome(c.tssm("train", *TINY, *OFF, "--tags", "foo", "--out", str(c.tmp / "r")), kept(c.tmp / "r"))


@case("SIGTERM midway, then the same command", 0, "")
def _sigterm_resume(c: Ctx) -> Outcome:
    out = c.tmp / "r"
    args = ["train", *TINY, "--mlflow", "false", "--method", "gsadmm", "--epochs", "60", "--out", str(out)]
    first = c.popen(*args)
    wait_rows(out, 4, first)
    f = stop(first, signal.SIGTERM)
    interrupted = run_status(out)
    p = c.tssm(*args)
    p.cmd = f"SIGTERM (exit {f.code}, run.json {interrupted}), then " + p.cmd
    ok = f.code == 4 and interrupted == "interrupted" and rows(out) == 61
    return Outcome(p, kept(out), None if ok else f"first exit {f.code}, {interrupted}, {rows(out)} rows")


def _snakemake_case(change: Callable[[dict], None]) -> Callable[[Ctx], Outcome]:
    def run(c: Ctx) -> Outcome:
        cfg = _tiny_config()
        change(cfg)
        t0 = time.time()
        r = snakemake(c.tmp, "-n", "--configfile", str(write_config(c.tmp / "bad.yaml", cfg)))
        msg = [line for line in (r.stdout + r.stderr).splitlines() if "n_train" in line or "cut" in line]
        return Outcome(Proc("snakemake -n --configfile bad.yaml", r.returncode, "\n".join(msg) or r.stderr,
                            time.time() - t0), "no job run")
    return run


case("snakemake -n, n_train larger than the dataset", NONZERO, "has only 1437 rows in that split")(
    _snakemake_case(lambda cfg: cfg["experiments"][0].update(run={"n_train": 5000})))
case("snakemake -n, cuts that do not fit every split level", NONZERO, "cut points given")(
    _snakemake_case(lambda cfg: cfg["experiments"][0].update(splits=[2, 3], run={"cuts": [4]})))


# ---------------------------------------------------------------------------- the README's table
for _args, _message in BAD_INPUT:
    def _bad_input(c: Ctx, args=_args) -> Outcome:
        args = [a.replace("{tmp}", str(c.tmp)) for a in args]
        p = c.tssm(*BAD_INPUT_BASE, "--threads", "1", "--out", str(c.tmp / "r"), *args)
        p.cmd = "tssm train " + c.short(args)
        return Outcome(p, kept(c.tmp / "r"))
    case(f"bad input: {' '.join(_args)}".replace("{tmp}", "$T"), 2, _message)(_bad_input)


@case("bad input: more ranks than subnetworks", NONZERO, "2 ranks for 1 subnetworks")
def _more_ranks(c: Ctx) -> Outcome:
    p = c.torchrun(f"exec {sys.executable} -m tssm train {' '.join(TINY + OFF)} --method gsadmm --splits 1 "
                   f"--out {c.tmp / 'r'}\n")
    p.cmd = "torchrun --nproc-per-node 2 ... --splits 1"
    p.stderr = "\n".join(line for line in p.stderr.splitlines() if line.startswith("error:")) or p.stderr
    return Outcome(p, kept(c.tmp / "r"))


@case("bad input: config key epocs:", 2, "did you mean 'epochs'")
def _misspelled(c: Ctx) -> Outcome:
    return Outcome(c.tssm("train", "--config", c.yaml("epocs: 3\n"), "--out", str(c.tmp / "r")), kept(c.tmp / "r"))


@case("bad input: --device cuda without a GPU", 2, "no CUDA GPU is visible")
def _cuda(c: Ctx) -> Outcome:
    return Outcome(c.tssm("train", *TINY, *OFF, "--device", "cuda", "--out", str(c.tmp / "r")), kept(c.tmp / "r"))


# ---------------------------------------------------------------------------- data verified (issue 24)
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def _train_on(c: Ctx, dataset: str, root: Path, *extra: str, env: dict | None = None) -> Proc:
    return c.tssm("train", *TINY, *OFF, "--dataset", dataset, "--data-root", str(root), "--download", "false",
                  "--n-train", "200", "--n-test", "100", "--epochs", "1", "--out", str(c.tmp / "r"), *extra, env=env)


def _debian_copy(c: Ctx, change: Callable[[dict[str, bytes]], None]) -> dict:
    """A Debian-style Fashion-MNIST folder: the real files (when installed, else a SKIP-like
    harness error), decompressed, changed by ``change``, recompressed; the env that points at it."""
    if not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").exists():
        raise RuntimeError("needs Debian's dataset-fashion-mnist")
    files = {f.name[:-3]: gzip.decompress(f.read_bytes()) for f in DEBIAN_FASHION.glob("*.gz")}
    change(files)
    src = c.tmp / "debian"
    src.mkdir()
    for name, data in files.items():
        (src / f"{name}.gz").write_bytes(gzip.compress(data, compresslevel=1))
    return {**c.env, "TSSM_FASHION_MNIST_DIR": str(src)}


def _swap(files: dict[str, bytes]) -> None:
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        files[f"train-{kind}"], files[f"t10k-{kind}"] = files[f"t10k-{kind}"], files[f"train-{kind}"]


def _zero_labels(files: dict[str, bytes]) -> None:
    files["train-labels-idx1-ubyte"] = files["train-labels-idx1-ubyte"][:8] + bytes(60000)


def _shuffle_labels(files: dict[str, bytes]) -> None:
    import numpy as np

    labels = np.frombuffer(files["train-labels-idx1-ubyte"][8:], np.uint8).copy()
    np.random.default_rng(0).shuffle(labels)
    files["train-labels-idx1-ubyte"] = files["train-labels-idx1-ubyte"][:8] + labels.tobytes()


for _name, _change, _message in (("train and test swapped", _swap, "train and test are swapped"),
                                 ("all-zero training labels", _zero_labels, "take only 1 of the 10 classes"),
                                 ("shuffled training labels", _shuffle_labels,
                                  "train-labels-idx1-ubyte is not the official file (sha256")):
    def _fashion_case(c: Ctx, change=_change) -> Outcome:
        env = _debian_copy(c, change)
        p = _train_on(c, "fashion_mnist", c.tmp / "data", env=env)
        return Outcome(p, kept(c.tmp / "r"), None if "\n" not in p.stderr.strip() else "more than one line")
    case(f"dataset: Fashion-MNIST (Debian) with {_name}", 2, _message)(_fashion_case)


@case("dataset: Debian Fashion-MNIST folder missing one .gz", 2, "lacks t10k-labels-idx1-ubyte.gz (the other")
def _debian_missing_one(c: Ctx) -> Outcome:
    src = c.tmp / "debian"
    write_mnist_gz(src)
    (src / "t10k-labels-idx1-ubyte.gz").unlink()
    p = _train_on(c, "fashion_mnist", c.tmp / "data", env={**c.env, "TSSM_FASHION_MNIST_DIR": str(src)})
    return Outcome(p, kept(c.tmp / "r"), "names other files" if "train-images" in p.stderr else None)


def _idx_set(root: Path, folder: str, train_side: int = 28, test_side: int = 28, seed: int = 0,
             rows: tuple[int, int] = (60000, 10000)) -> None:
    """Real-size fake idx files (random pixels, labels cycling through the 10 classes)."""
    import struct

    import numpy as np

    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n, side in (("train", rows[0], train_side), ("t10k", rows[1], test_side)):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, n, side, side) + rng.integers(0, 256, n * side * side, np.uint8).tobytes())
        labels = ((np.arange(n) + seed) % 10).astype(np.uint8)
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))


@case("dataset: MNIST with 27x27 test images (mat1 and mat2 before)", 2, "t10k-images-idx3-ubyte holds 27x27 images")
def _mixed_sizes(c: Ctx) -> Outcome:
    _idx_set(c.tmp / "data", "MNIST", test_side=27)
    p = _train_on(c, "mnist", c.tmp / "data")
    return Outcome(p, kept(c.tmp / "r"), "mat1 and mat2" if "mat1" in p.stderr else None)


@case("dataset: KMNIST of 32x32 images", 2, "holds 32x32 images, not the dataset's 28x28")
def _big_images(c: Ctx) -> Outcome:
    _idx_set(c.tmp / "data", "KMNIST", train_side=32, test_side=32, rows=(600, 100))
    return Outcome(_train_on(c, "kmnist", c.tmp / "data"), kept(c.tmp / "r"))


@case("dataset: CIFAR-10 data_batch_1 a pickle that runs code", 2, "data_batch_1 is not the official file (md5")
def _evil_cifar(c: Ctx) -> Outcome:
    import pickle

    from tests.test_data import write_cifar10

    marker = c.tmp / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    write_cifar10(c.tmp / "data")
    with open(c.tmp / "data" / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump({"data": Evil(), "labels": [0]}, f, protocol=2)
    p = _train_on(c, "cifar10", c.tmp / "data")
    return Outcome(p, kept(c.tmp / "r") + ("; CODE RAN" if marker.exists() else "; no code ran"),
                   "the pickle ran code" if marker.exists() else None)


@case("dataset: same settings on other MNIST files of the same shapes", 2, "differs in: the data files' content")
def _other_data(c: Ctx) -> Outcome:
    _idx_set(c.tmp / "d1", "MNIST", seed=0)
    first = _train_on(c, "mnist", c.tmp / "d1")
    copy = _train_on(c, "mnist", c.tmp / "d1")  # the same files again: nothing to do
    _idx_set(c.tmp / "d2", "MNIST", seed=1)
    p = _train_on(c, "mnist", c.tmp / "d2")
    p.cmd = "tssm train --data-root d1; again; then --data-root d2 (other labels, same shapes)"
    ok = first.code == 0 and copy.code == 0 and "nothing to do" in copy.stderr and run_status(c.tmp / "r") == "finished"
    return Outcome(p, kept(c.tmp / "r"), None if ok else f"first {first.code}, again {copy.code}: {copy.stderr[-200:]}")


# ---------------------------------------------------------------------------- run identity, failure paths (issue 24)
@case("checkpoint written by other code, then --overwrite", 2, "was written by code 000000000000")
def _other_code(c: Ctx) -> Outcome:
    import torch

    out = c.tmp / "r"
    args = ["train", *TINY, "--mlflow", "false", "--method", "gsadmm", "--epochs", "30", "--out", str(out)]
    first = c.popen(*args)
    wait_rows(out, 3, first)
    stop(first)
    ckpt = out / "checkpoint" / "rank0.pt"
    blob = torch.load(ckpt, weights_only=True)
    blob["code_version"] = "0" * 40
    torch.save(blob, ckpt)
    p = c.tssm(*args)
    refused = run_status(out)
    again = c.tssm(*args, "--overwrite")
    p.cmd = "SIGKILL, checkpoint's code_version edited, same command; then --overwrite"
    ok = refused == "failed" and again.code == 0 and run_status(out) == "finished" and rows(out) == 31
    return Outcome(p, f"run.json {refused} after the refusal; after --overwrite: {kept(out)}",
                   None if ok else f"refusal left {refused}; --overwrite exit {again.code}: {again.stderr[-200:]}")


def _fsize_limit(size: int):
    def limit():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return limit


@case("full disk at the first checkpoint write (torch.save RuntimeError)", 2, "torch.save could not write the checkpoint")
def _full_disk_checkpoint(c: Ctx) -> Outcome:
    out = c.tmp / "r"
    p = c.tssm("train", *TINY, "--mlflow", "false", "--width", "64", "--epochs", "3", "--out", str(out),
               preexec_fn=_fsize_limit(20000))
    p.cmd += " (files capped at 20 kB: the checkpoint does not fit)"
    left = list(out.rglob(".*.tmp"))
    ok = run_status(out) == "failed" and not left
    return Outcome(p, kept(out), None if ok else f"status {run_status(out)}, temp files {left}")


@case("full disk at the checkpoint write, MLflow on", 2, "torch.save could not write the checkpoint")
def _full_disk_checkpoint_mlflow(c: Ctx) -> Outcome:
    from mlflow.tracking import MlflowClient

    from tssm.tracking.store import ensure_sqlite_store

    ensure_sqlite_store(c.uri)  # the store exists; its file may grow by 400 kB, the checkpoint needs more
    MlflowClient(c.uri).create_experiment(EXPERIMENT)
    cap = Path(c.uri[len("sqlite:///"):]).stat().st_size + 400_000
    out = c.tmp / "r"
    p = c.tssm("train", *TINY, "--width", "512", "--epochs", "3", "--experiment", EXPERIMENT, "--out", str(out),
               preexec_fn=_fsize_limit(cap))
    p.cmd += " (files capped at the store's size + 400 kB)"
    runs = mlflow_runs(c.uri)
    ok = run_status(out) == "failed" and runs == Counter(FAILED=1)
    return Outcome(p, kept(out, c.uri), None if ok else f"status {run_status(out)}, MLflow {dict(runs)}")


@case("full disk before the first epoch (the folder's owner record)", 2, "cannot write")
def _full_disk_start(c: Ctx) -> Outcome:
    out = c.tmp / "r"
    p = c.tssm("train", *TINY, *OFF, "--epochs", "2", "--out", str(out), preexec_fn=_fsize_limit(64))
    p.cmd += " (files capped at 64 bytes)"
    return Outcome(p, kept(out), None if run_status(out) in ("none", "failed") else f"status {run_status(out)}")


@case("--out '' (would write into the current directory)", 2, "out must name a run folder")
def _empty_out(c: Ctx) -> Outcome:
    cwd = c.tmp / "cwd"
    cwd.mkdir()
    p = c.tssm("train", *TINY, *OFF, "--epochs", "1", "--out", "", cwd=cwd)
    left = sorted(x.name for x in cwd.iterdir())
    return Outcome(p, f"current directory: {left or 'empty'}", f"wrote {left} into the current directory" if left else None)


@case("unknown tracking URI scheme (flag)", 2, "unknown tracking URI scheme 'foo:'")
def _bad_scheme(c: Ctx) -> Outcome:
    p = c.tssm("train", *TINY, "--checkpoint", "false", "--epochs", "1", "--tracking-uri", "foo://store",
               "--out", str(c.tmp / "r"))
    return Outcome(p, kept(c.tmp / "r"), "mentions the model registry" if "registry" in p.stderr else None)


@case("unknown tracking URI scheme ($MLFLOW_TRACKING_URI)", 2, "unknown tracking URI scheme 'mlflow-store:'")
def _bad_scheme_env(c: Ctx) -> Outcome:
    p = c.tssm("train", *TINY, "--checkpoint", "false", "--epochs", "1", "--out", str(c.tmp / "r"),
               env={**c.env, "MLFLOW_TRACKING_URI": "mlflow-store://x"})
    return Outcome(p, kept(c.tmp / "r"), "mentions the model registry" if "registry" in p.stderr else None)


@case("sqlite store on a read-only filesystem (/proc)", 2, "cannot create the MLflow store /proc/tssm.db", max_secs=30)
def _readonly_store(c: Ctx) -> Outcome:
    p = c.tssm("train", *TINY, "--checkpoint", "false", "--epochs", "1", "--tracking-uri", "sqlite:////proc/tssm.db",
               "--out", str(c.tmp / "r"))
    return Outcome(p, kept(c.tmp / "r"), None if "\n" not in p.stderr.strip() else "more than one line")


@case("torchrun ranks on different data (other --data-root, other files)", NONZERO,
      "different settings: data_identity", max_secs=120)
def _ranks_other_data(c: Ctx) -> Outcome:
    _idx_set(c.tmp / "d0", "MNIST", seed=0)
    _idx_set(c.tmp / "d1", "MNIST", seed=1)
    base = " ".join(TINY + OFF)
    body = (f'exec {sys.executable} -m tssm train {base} --method gsadmm --splits 2 --epochs 1 --dataset mnist '
            f'--download false --n-train 200 --n-test 100 --data-root {c.tmp}/d$RANK --out {c.tmp / "r"}\n')
    p = c.torchrun(body)
    p.cmd = "torchrun, rank r with --data-root d<r> (same shapes, other labels)"
    p.stderr = "\n".join(line for line in p.stderr.splitlines() if line.startswith("error:")) or p.stderr
    return Outcome(p, kept(c.tmp / "r"), None if run_status(c.tmp / "r") == "none" else "a run.json was written")


# ---------------------------------------------------------------------------- the table
COLUMNS = ["case", "command", "exit", "message", "kept", "secs", "result"]


def first_line(stderr: str) -> str:
    """The user's message: the first ``error:``/``warning:``/``note:`` line (argparse prints its
    usage first), else the first line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    said = [line for line in lines if re.search(r"(^|: )(error|warning|note): ", line)]
    return (said or lines or [""])[0]


def judge(case_: Case, o: Outcome) -> str:
    """PASS, or FAIL and why."""
    p = o.proc
    why = []
    if case_.code == NONZERO and p.code == 0 or case_.code != NONZERO and p.code != case_.code:
        why.append(f"exit {p.code}, expected {case_.code}")
    if case_.message and case_.message not in p.stderr:
        why.append(f"message lacks {case_.message!r}")
    if "Traceback" in p.stderr:
        why.append("traceback")
    if p.secs > case_.max_secs:
        why.append(f"took {p.secs:.0f} s > {case_.max_secs:g} s")
    if o.problem:
        why.append(o.problem)
    return "PASS" if not why else "FAIL: " + "; ".join(why)


def run_case(case_: Case) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="tssm-fc-") as tmp:
        try:
            o = case_.run(Ctx(Path(tmp)))
        except Exception as e:  # the harness itself: a FAIL row, not a crash of the table
            o = Outcome(Proc("", -1, f"harness: {type(e).__name__}: {e}", 0.0), "", "the case could not run")
    return {"case": case_.name, "command": o.proc.cmd, "exit": str(o.proc.code), "message": first_line(o.proc.stderr),
            "kept": o.kept, "secs": f"{o.proc.secs:.1f}", "result": judge(case_, o)}


def markdown(table: list[dict[str, str]], width: int = 140) -> str:
    def cell(s: str) -> str:
        s = s.replace("|", "\\|")
        return s if len(s) <= width else s[: width - 3] + "..."
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r[c]) for c in COLUMNS) + " |" for r in table]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", default=[], help="run the cases whose name contains this (repeatable)")
    ap.add_argument("--out", default=str(ROOT / "results"), help="folder of failure_cases.csv and .md")
    args = ap.parse_args(argv)
    table = []
    for case_ in [c for c in CASES if not args.only or any(o.lower() in c.name.lower() for o in args.only)]:
        row = run_case(case_)
        print(f"{row['result'][:4]}  {row['secs']:>5} s  {case_.name}", file=sys.stderr, flush=True)
        table.append(row)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "failure_cases.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(table)
    md = markdown(table)
    failed = [r for r in table if r["result"] != "PASS"]
    summary = f"{len(table) - len(failed)}/{len(table)} cases behave as expected"
    (out / "failure_cases.md").write_text(f"{md}\n\n{summary}\n")
    print(md)
    print(f"\n{summary}" + (": " + ", ".join(r["case"] for r in failed) if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
