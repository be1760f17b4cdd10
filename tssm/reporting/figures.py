"""``tssm figures``: every figure of a results folder, as PNG and PDF, from the recorded files.

=====================  ==============================================================
``figure1_train_acc``  :mod:`.figure1`: training accuracy per epoch (the paper's Figure 1)
``figure2_speed``      :mod:`.figure2`: time per epoch and accuracy by n (Figure 2)
``acc_vs_splits``      :mod:`.acc_vs_splits`: final accuracy versus n
``time_to_target``     :mod:`.time_to_target`: seconds to a training accuracy versus n
``speedup``            :mod:`.speedup`: a baseline's seconds per epoch over each run's
``sweep``              :mod:`.sweep_figure`: per variant (only for runs with variants)
``budget``             :mod:`.budget_figure`: difference to the control against epochs (``--budget``)
=====================  ==============================================================

Resources. A config may run the same points plainly and on an equal-resources budget (an
experiment's ``cores: C``); :func:`tssm.reporting.figdata.runs_on_budget` gives the speed
figures the largest budget's runs and the accuracy figures the plain ones. Methods are drawn
by role, label and style (:mod:`tssm.roles`), never by name. Bad input (a missing or empty
folder, an unknown format, a split level no run has, a target outside (0, 1], a damaged
summary.csv, an output folder that is a file) is one line and exit 2::

    tssm figures results/default                   # reads results/default/summary.csv
    tssm figures --summary S.csv --out-dir FIGDIR --target-acc 0.95 --formats png
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .. import layout, paper
from ..errors import ConfigError
from . import inputs
from .acc_vs_splits import acc_vs_splits
from .budget_figure import budget_figure
from .figdata import FigureData, from_runs, read_results, runs_of_preset
from .figure1 import figure1
from .figure2 import figure2
from .methods import Methods
from .records import Run, find_runs, load_runs
from .rows import has_variants, presets_of
from .speedup import speedup
from .style import SWEEP_FIGURE
from .sweep_figure import sweep
from .time_to_target import time_to_target_figure

#: File stems this module writes (one PNG and one PDF each), from the catalogue in tssm.layout
#: (:data:`SWEEP_FIGURE` too when any run has a variant).
FIGURES = tuple(layout.figure_stems(has_variants=False))
#: The figure of the difference to the control against epochs (``--budget``).
BUDGET_FIGURE = "budget"


def make_figures(results: FigureData | Sequence[Run], out_dir: str | Path, *, summary: pd.DataFrame | None = None,
                 preset: str | None = None, figure1_splits: int = paper.FIGURE1_SPLITS,
                 figure1_preset: str | None = None,
                 figure2_splits: Sequence[int] = paper.FIGURE2_SPLITS,
                 figure2_dataset: str | None = None, figure2_model: str | None = None,
                 target: float = 0.9, reference: str = "adam",
                 formats: Sequence[str] = ("png", "pdf"), budget: bool = False) -> list[Path]:
    """Write every figure of :data:`FIGURES` under ``out_dir`` (and :data:`SWEEP_FIGURE` when runs
    have variants, :data:`BUDGET_FIGURE` with ``budget``); returns the files written.

    ``results``: what :func:`read_results` or :func:`from_runs` returns, or loaded runs (then
    summarised here, once, unless ``summary`` is given). ``preset``: the figures draw only that
    preset's runs (Figure 1 those of ``figure1_preset`` when given), except the sweep and budget
    figures, which show presets apart."""
    import seaborn as sns

    data = results if isinstance(results, FigureData) else from_runs(results, target, summary)
    s, out = data.summary, Path(out_dir)
    sns.set_theme(style="whitegrid", context="paper")
    ps, pc = runs_of_preset(s, data.curves, preset)
    written = []
    written += figure1(s, data.curves, figure1_splits, out / "figure1_train_acc", formats, figure1_preset or preset)
    written += figure2(ps, pc, figure2_splits, figure2_dataset, figure2_model, out / "figure2_speed", formats)
    written += acc_vs_splits(ps, out / "acc_vs_splits", formats)
    written += time_to_target_figure(ps, target, out / "time_to_target", formats)
    written += speedup(ps, reference, out / "speedup", formats)
    if has_variants(s):
        written += sweep(s, reference, out / SWEEP_FIGURE, formats)
    if budget:
        written += budget_figure(s, data.curves, out / BUDGET_FIGURE, formats)
    return written


def check_formats(formats: Sequence[str]) -> list[str]:
    """The file formats asked for, refused in one line unless matplotlib can write each."""
    from matplotlib.figure import Figure

    known = Figure().canvas.get_supported_filetypes()
    bad = [f for f in formats if f.lower() not in known]
    if not formats or bad:
        shown = ", ".join(repr(f) for f in bad) or "none"
        raise ConfigError(f"unknown figure format {shown}; choose from {', '.join(sorted(known))} (e.g. --formats png pdf)")
    return [f.lower() for f in formats]


def check_split_level(summary: pd.DataFrame, splits: int) -> None:
    """Refuse a Figure 1 split level that no run of a split-level method has (whatever its
    status: runs that did not finish are named in the figure's note). Runs of whole-network
    methods only: nothing to refuse, Figure 1 draws them."""
    looks = Methods(summary)
    split = summary[~summary["method"].map(looks.whole_network).astype(bool)]
    have = sorted({int(n) for n in split["splits"].dropna()})
    if have and splits not in have:
        raise ConfigError(f"--figure1-splits {splits}: no run of a split-level method has n = {splits}; the runs "
                          f"have n = {', '.join(map(str, have))}")


def check_preset(summary: pd.DataFrame, preset: str, flag: str) -> None:
    """Refuse a preset (of ``flag``) that no run has, naming the ones they have."""
    have = presets_of(summary)
    if preset not in have:
        runs = f"the runs have {', '.join(have)}" if have else "no run names a preset"
        raise ConfigError(f"{flag} {preset}: no run has preset {preset!r}; {runs}")


def build_parser(prog: str = "python -m tssm.reporting.figures") -> inputs.Parser:
    p = inputs.Parser(prog=prog, description="Draw the benchmark's figures from recorded runs (never retrains).")
    p.add_argument("paths", nargs="*", help="results folder(s) or run directories; a folder holding summary.csv "
                                           "uses that summary's list of runs")
    p.add_argument("--summary", help="summary.csv whose run_dir column lists the runs to draw")
    p.add_argument("--out-dir", help="where the figures go (default: <results>/figures)")
    p.add_argument("--figure1-splits", type=int, default=None,
                   help=f"split level n of the split methods in Figure 1 (default {paper.FIGURE1_SPLITS}, the paper's)")
    p.add_argument("--preset", help="draw only the runs of this preset (e.g. tuned), except in the sweep and "
                                    "budget figures, which show presets apart (default: every run)")
    p.add_argument("--figure1-preset", help="Figure 1 draws only the runs of this preset (e.g. paper, the "
                                            "paper's Figure 1 settings; default: --preset's)")
    p.add_argument("--figure2-splits", type=int, nargs="+", default=list(paper.FIGURE2_SPLITS),
                   help="n levels of Figure 2(b)")
    p.add_argument("--figure2-dataset", help="dataset of Figure 2 (default: cifar10/resnet if present, else the "
                                             "dataset/model with most split levels)")
    p.add_argument("--figure2-model", help="model of Figure 2")
    p.add_argument("--target-acc", type=inputs.target, default=0.9,
                   help="training accuracy of the time-to-target figure, in (0, 1] (default 0.9)")
    p.add_argument("--reference", default="adam", help="baseline at n=1 the speedup is relative to (default adam)")
    p.add_argument("--formats", nargs="+", default=["png", "pdf"], help="file formats (default png pdf)")
    p.add_argument("--budget", action="store_true",
                   help="also budget.png: each compared method minus the control against epochs (95%% interval)")
    return p


@inputs.one_line_errors
def main(argv: list[str] | None = None, prog: str = "python -m tssm.reporting.figures") -> int:
    args = build_parser(prog).parse_args(argv)
    formats = check_formats(args.formats)
    inputs.existing_inputs(args.paths)
    summary_path = Path(args.summary) if args.summary else None
    if summary_path is None and len(args.paths) == 1 and (Path(args.paths[0]) / "summary.csv").exists():
        summary_path = Path(args.paths[0]) / "summary.csv"
    if summary_path is not None:
        # the listed runs, and with --summary any further run folders given
        data = read_results(summary_path, args.target_acc, args.paths if args.summary else ())
        base = summary_path.parent
    elif args.paths:
        if not find_runs(args.paths):
            raise inputs.no_runs(args.paths)
        data = from_runs(load_runs(args.paths), args.target_acc)
        base = Path(args.paths[0]) if Path(args.paths[0]).is_dir() else Path(".")
    else:
        raise ConfigError("give a results folder, run directories or --summary")
    out = Path(args.out_dir) if args.out_dir else base / "figures"
    inputs.writable_dir(out, "--out-dir")
    if args.figure1_splits is not None:
        check_split_level(data.summary, args.figure1_splits)
    for flag, preset in (("--preset", args.preset), ("--figure1-preset", args.figure1_preset)):
        if preset is not None:
            check_preset(data.summary, preset, flag)
    inputs.warn(data.summary)
    written = make_figures(data, out, figure1_splits=args.figure1_splits or paper.FIGURE1_SPLITS,
                           preset=args.preset, figure1_preset=args.figure1_preset,
                           figure2_splits=args.figure2_splits, figure2_dataset=args.figure2_dataset,
                           figure2_model=args.figure2_model, target=args.target_acc, reference=args.reference,
                           formats=formats, budget=args.budget)
    print(f"{len(data.summary)} runs -> {len(written)} files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
