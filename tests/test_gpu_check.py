"""benchmarks/gpu_check.py on this machine: the CPU rows pass, and without a GPU every GPU row
says so (CI's slow tier runs it; on a GPU machine the GPU rows must pass too)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_check_runs(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    table = r.stdout
    for check in ("torch / CUDA build", "gsadmm n=2, 3 epochs", "dladmm n=1, 3 epochs", "frozen n=2",
                  "checkpoint + resume on CPU", "2 ranks on CPU vs serial (gloo)"):
        assert check in table, check
    assert "FAIL" not in table and "no failure" in table
    if not torch.cuda.is_available():
        assert table.count("skipped: no GPU") >= 5
