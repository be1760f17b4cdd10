"""The layout of a results folder: where each run and each figure lives.

The pipeline writes it (:mod:`tssm.grid`, the Snakefile) and :mod:`tssm.reporting` reads it
back; torch-free. A grid point is
``(dataset, model, method, splits, seed, cores, variant)``; its folder is

    <results>/runs/{dataset}/{model}/{method}/n{splits}/seed{seed}[/cores{cores}][/{variant}]

where ``cores`` is None for a run with the pipeline's plain resources (``workers`` ranks of
``threads`` threads) and the budget C of an experiment with ``cores: C`` (equal resources:
:func:`tssm.grid.equal_resources` splits C cores into ranks and threads), and ``variant`` is "" for a
run without a sweep and the variant's name for one setting of a config's ``grid:``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

#: The grid axes of a run, in the order of the results tree.
AXES = ("dataset", "model", "method", "splits", "seed", "cores", "variant")

#: Relative to a config's results folder; ``{cores}`` is "" or "/cores<C>", ``{variant}`` "" or
#: "/<name>" (a variant's name starts with a setting's name, never with ``cores`` and a number).
RUN_DIR = "runs/{dataset}/{model}/{method}/n{splits}/seed{seed}{cores}{variant}"

#: The folder of an equal-resources budget of C cores: ``cores<C>``.
CORES_DIR = "cores{}"

_PATH_RE = re.compile(r"(?P<dataset>[^/]+)/(?P<model>[^/]+)/(?P<method>[^/]+)/n(?P<splits>\d+)/seed(?P<seed>\d+)"
                      r"(?:/cores(?P<cores>\d+))?(?:/(?P<variant>[^/]+))?/?$")


def run_dir(results: str | Path, dataset: str, model: str, method: str, splits: int, seed: int,
            cores: int | None = None, variant: str = "") -> str:
    """The folder of one grid point under a config's results folder."""
    rel = RUN_DIR.format(dataset=dataset, model=model, method=method, splits=splits, seed=seed,
                         cores=f"/{CORES_DIR.format(cores)}" if cores else "", variant=f"/{variant}" if variant else "")
    return f"{results}/{rel}"


def axes_from_path(path: str | Path) -> dict[str, Any]:
    """The grid point of a run folder (the inverse of :func:`run_dir`); {} if it is not one.

    ``cores`` and ``variant`` are None for a run without them."""
    m = _PATH_RE.search(Path(path).as_posix())
    if not m:
        return {}
    d: dict[str, Any] = m.groupdict()
    d["splits"], d["seed"] = int(d["splits"]), int(d["seed"])
    d["cores"] = int(d["cores"]) if d["cores"] else None
    return d


def resources_text(ranks: Any, threads: Any) -> str:
    """'2 ranks × 1 thread': how a run used its cores, as figures and tables write it."""
    def count(v: Any, word: str) -> str:
        try:
            k = int(v)
        except (TypeError, ValueError):
            return f"? {word}s"
        return f"{k} {word}" + ("" if k == 1 else "s")
    return f"{count(ranks, 'rank')} × {count(threads, 'thread')}"


#: The figures of a results folder (``<results>/figures/<stem>.png|pdf``), in report order:
#: stem -> (caption file in workflow/report/, report category, label). ``sweep`` is drawn
#: only for a config with variants (see :func:`figure_stems`).
FIGURES: dict[str, tuple[str, str, str]] = {
    "figure1_train_acc": ("figure1", "Paper figures", "Figure 1: training accuracy"),
    "figure2_speed": ("figure2", "Paper figures", "Figure 2: time per epoch"),
    "acc_vs_splits": ("acc_vs_splits", "Beyond the paper", "accuracy vs n"),
    "time_to_target": ("time_to_target", "Beyond the paper", "time to target"),
    "speedup": ("speedup", "Beyond the paper", "speedup vs n"),
    "sweep": ("sweep", "Sweep", "final accuracy per variant"),
    "budget": ("budget", "Beyond the paper", "difference to the control vs epochs"),
}


def figure_stems(has_variants: bool, budget: bool = False) -> list[str]:
    """The figures drawn for a results folder (the sweep figure needs variants; the budget
    figure is drawn when the config names budget epochs)."""
    return [s for s in FIGURES if (s != "sweep" or has_variants) and (s != "budget" or budget)]
