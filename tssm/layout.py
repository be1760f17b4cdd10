"""Where a run lives and how it is launched: facts the pipeline and the package share.

Torch-free on purpose: the Snakefile imports this module to plan a grid (``snakemake -n``
stays fast) and :mod:`tssm.reporting` reads the same layout back. A grid point is
``(dataset, model, method, splits, seed, cores, variant)``; its folder is

    <results>/runs/{dataset}/{model}/{method}/n{splits}/seed{seed}[/cores{cores}][/{variant}]

where ``cores`` is None for a run with the pipeline's plain resources (``workers`` ranks of
``threads`` threads) and the budget C of an experiment with ``cores: C`` (equal resources:
:func:`equal_resources` splits C cores into ranks and threads), and ``variant`` is "" for a
run without a sweep and the variant's name for one setting of a config's ``grid:``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
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


def equal_resources(cores: int, splits: int, end_to_end: bool) -> tuple[int, int]:
    """(ranks, threads per rank) of a run given ``cores`` cores: a method that splits the network
    runs one rank per subnetwork (at most one per core, contiguous groups beyond that) and shares
    the cores among them; an end-to-end method (sgd, adam) runs one process with every core as a
    thread. So every run of a comparison uses the same cores, however it uses them."""
    ranks = 1 if end_to_end else max(1, min(splits, cores))
    return ranks, max(1, cores // ranks)


def resources_text(ranks: Any, threads: Any) -> str:
    """'2 ranks × 1 thread': how a run used its cores, as figures and tables write it."""
    def count(v: Any, word: str) -> str:
        try:
            k = int(v)
        except (TypeError, ValueError):
            return f"? {word}s"
        return f"{k} {word}" + ("" if k == 1 else "s")
    return f"{count(ranks, 'rank')} × {count(threads, 'thread')}"


#: Training and test rows of each dataset (tssm.data loads them; a test checks they agree),
#: so that planning a grid can refuse an ``n_train`` larger than the data.
DATASET_ROWS: dict[str, tuple[int, int]] = {
    "digits": (1437, 360), "mnist": (60000, 10000), "fashion_mnist": (60000, 10000), "kmnist": (60000, 10000),
    "cifar10": (50000, 10000), "cifar100": (50000, 10000),
}


def check_point(dataset: str, model: str, splits: int, settings: Mapping[str, Any]) -> str | None:
    """Why ``tssm train`` would refuse this grid point before training (None if it would not):
    a split level the model cannot have, cuts that do not fit it, more rows than the data has."""
    blocks = num_blocks(model, settings)
    if blocks is not None and splits > blocks:
        return f"split level n={splits} exceeds the {blocks} blocks of model `{model}`; use splits between 1 and {blocks}"
    cuts = settings.get("cuts")
    if cuts and (len(cuts) != splits - 1 or list(cuts) != sorted(set(cuts))
                 or (blocks is not None and not all(0 < c < blocks for c in cuts))):
        return (f"cuts {list(cuts)} do not fit split level n={splits}: it needs {splits - 1} strictly increasing "
                f"block indices between 1 and {(blocks or 0) - 1}; set `cuts` per experiment with one split level")
    rows = DATASET_ROWS.get(dataset)
    for key, have in zip(("n_train", "n_test"), rows or ()):
        if settings.get(key) is not None and settings[key] > have:
            return f"{key}={settings[key]} is more than the {have} rows of `{dataset}`"
    return None


def num_blocks(model: str, settings: Mapping[str, Any]) -> int | None:
    """Blocks ``model`` can be cut between (what :func:`tssm.models.build_model` builds; a test
    checks they agree). None for an unknown model."""
    if model == "mlp":
        return int(settings.get("depth", 10))
    if model == "cnn":
        return 5
    if model == "resnet":
        return int(settings.get("residual_blocks", 24)) + 4
    return None


def launch_command(python: str, workers: int, module: str = "tssm") -> str:
    """``python -m tssm``, or torchrun with one rank per worker (on this machine) when
    ``workers`` > 1: how the pipeline and the benchmarks start a run."""
    py = shlex.quote(python)
    if workers > 1:
        return f"{py} -m torch.distributed.run --standalone --nproc-per-node {workers} -m {module}"
    return f"{py} -m {module}"


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
}


def figure_stems(has_variants: bool) -> list[str]:
    """The figures drawn for a results folder (the sweep figure needs variants)."""
    return [s for s in FIGURES if s != "sweep" or has_variants]
