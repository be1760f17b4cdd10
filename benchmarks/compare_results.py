"""Compare every metrics.csv cell of two results folders of one config (e.g. a baseline and a new run):

    python benchmarks/compare_results.py BASELINE_RESULTS NEW_RESULTS   # e.g. results/default

Result cells must be equal as text (bit-identical); timing and memory columns (measured,
never reproducible) are counted apart. The summary's result columns are compared too.
"""
import csv
import sys

import pandas as pd
from pathlib import Path

MEASURED = {"train_time_s", "epoch_time_s", "eval_time_s", "samples_per_s", "peak_mem_mb", "peak_rss_mb", "wait_s"}
base, new = map(Path, sys.argv[1:3])
files = sorted(p.relative_to(base) for p in base.rglob("runs/**/metrics.csv") if ".replaced" not in p.parts)
newfiles = sorted(p.relative_to(new) for p in new.rglob("runs/**/metrics.csv") if ".replaced" not in p.parts)
print(f"run folders: baseline {len(files)}, new {len(newfiles)}, in both {len(set(files) & set(newfiles))}")
cells = diff = mcells = mdiff = 0
examples = []
for rel in files:
    a = list(csv.DictReader(open(base / rel)))
    b = list(csv.DictReader(open(new / rel))) if (new / rel).exists() else []
    if len(a) != len(b) or (a and list(a[0]) != list(b[0])):
        print(f"SHAPE DIFFERS: {rel}: {len(a)} vs {len(b)} rows"); diff += 1; continue
    for ra, rb in zip(a, b):
        for k in ra:
            if k in MEASURED or k.startswith("wait_s"):
                mcells += 1; mdiff += ra[k] != rb[k]
                continue
            cells += 1
            if ra[k] != rb[k]:
                diff += 1
                if len(examples) < 5: examples.append((str(rel), ra["epoch"], k, ra[k], rb[k]))
print(f"result cells compared: {cells}, differing: {diff}")
print(f"measured cells (times, memory): {mcells}, differing: {mdiff} (expected)")
for e in examples: print("  ", e)
# summary.csv result columns
sa, sb = pd.read_csv(base / "summary.csv"), pd.read_csv(new / "summary.csv")
cols = ["final_train_acc", "final_test_acc", "final_train_loss", "final_test_loss", "epochs_done", "status", "config_hash"]
ka = sa.set_index("run_dir")[cols].sort_index(); kb = sb.set_index("run_dir")[cols].sort_index()
print(f"summary rows: {len(sa)} vs {len(sb)}; result cells equal: {(ka.astype(str) == kb.astype(str)).values.sum()} of {ka.size}")
