"""``tssm summary``: ``summary.csv`` (one row per run) and ``summary.md`` of a results folder.

Everything here reads the files runs leave behind and never reruns training::

    tssm summary results/default                      # writes results/default/summary.{csv,md}
    tssm summary RUN_DIR_OR_RUN_JSON ... --csv out.csv --md out.md
    python -m tssm.reporting.summary results/default  # the same

``summary.md``: the verdict (runs of a named preset), the mean ± std table of every run
group, the paired difference of each compared method to the control, the runs beside the
paper's Figure 1 values (where the paper has them) and, for a sweep, the
table per variant (and, with ``--epochs 10 30 100``, the verdict at those epochs). Bad input (a missing or empty folder, a target outside (0, 1], an output
that cannot be written) is one line and exit 2; runs whose record cannot be counted get a
warning line each and are listed in summary.md, never averaged.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from . import inputs
from .budget import budget_markdown
from .figdata import curves_of
from .methods import fill_roles
from .paper_table import paper_markdown
from .records import find_runs, load_run
from .rows import summarize
from .stats import paired_markdown
from .sweeps import sweep_markdown
from .tables import markdown_table
from .verdict import verdict_markdown


def summary_markdown(df: pd.DataFrame, title: str | None = None, reference: str = "adam", budget: str = "") -> str:
    """summary.md: a count of runs by status, the verdict, every run group, the paired
    differences, the runs beside the paper's Figure 1 values, the sweep and the ``budget``
    section (each where the runs have one)."""
    head = f"# {title}\n\n" if title else ""
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    line = ", ".join(f"{v} {k}" for k, v in counts.items()) or "no runs"
    sweep = sweep_markdown(df, reference)
    paired = paired_markdown(df) if len(df) else ""
    verdict = verdict_markdown(df) if len(df) else ""
    against = paper_markdown(df)
    return (f"{head}{len(df)} runs ({line}). Mean ± std over seeds of finished runs; "
            f"n = number of subnetworks (1 = end-to-end).\n\n" + (f"{verdict}\n## Every run group\n\n" if verdict else "")
            + markdown_table(df) + (f"\n{paired}" if paired else "") + (f"\n{against}" if against else "")
            + (f"\n{sweep}" if sweep else "")
            + (f"\n{budget}" if budget else ""))


def write_summary(paths: Iterable[str | Path], csv_path: str | Path | None, md_path: str | Path | None,
                  target: float = 0.9, title: str | None = None, reference: str = "adam",
                  epochs: Sequence[int] = ()) -> pd.DataFrame:
    """Summarize the runs under ``paths`` into ``csv_path`` and ``md_path`` (either may be None).

    With variants, summary.md ends with the sweep table (``reference``: the baseline at n = 1);
    with ``epochs``, with the verdict at each of them (:mod:`tssm.reporting.budget`)."""
    runs = [load_run(p) for p in find_runs(paths)]
    df = fill_roles(summarize(runs, target))
    if csv_path is not None:
        base = Path(csv_path).parent
        base.mkdir(parents=True, exist_ok=True)
        out = df.copy()
        # run directories relative to the csv, so a moved results folder still finds its runs
        out["run_dir"] = [Path(os.path.relpath(p, base.resolve())).as_posix() for p in out["run_dir"]]
        out.to_csv(csv_path, index=False)
    if md_path is not None:
        Path(md_path).parent.mkdir(parents=True, exist_ok=True)
        budget = budget_markdown(df, curves_of(runs), epochs) if epochs else ""
        Path(md_path).write_text(summary_markdown(df, title, reference, budget))
    return df


def build_parser(prog: str = "python -m tssm.reporting.summary") -> inputs.Parser:
    p = inputs.Parser(prog=prog, description="Summarize recorded runs (run.json + metrics.csv) into summary.csv "
                                             "(one row per run) and summary.md (mean ± std over seeds).")
    p.add_argument("paths", nargs="+", help="run directories, run.json files, or folders above them "
                                           "(e.g. results/default)")
    p.add_argument("--csv", help="where to write summary.csv (default: <dir>/summary.csv when one folder is given)")
    p.add_argument("--md", help="where to write summary.md (default: next to the csv)")
    p.add_argument("--target-acc", type=inputs.target, default=0.9,
                   help="accuracy target for time-to-target (training, and test accuracy in the table), in (0, 1] (default 0.9)")
    p.add_argument("--title", help="heading of summary.md")
    p.add_argument("--reference", default="adam", help="baseline method (at n=1) a sweep is compared with, "
                                                       "besides the control (default adam)")
    p.add_argument("--epochs", type=int, nargs="+", default=[], metavar="E",
                   help="also the verdict at these epochs (e.g. 10 30 100; the runs' evaluated epochs)")
    return p


@inputs.one_line_errors
def main(argv: list[str] | None = None, prog: str = "python -m tssm.reporting.summary") -> int:
    args = build_parser(prog).parse_args(argv)
    csv_path, md_path = args.csv, args.md
    if csv_path is None and md_path is None:
        if len(args.paths) == 1 and Path(args.paths[0]).is_dir():
            base = Path(args.paths[0])
            csv_path, md_path = base / "summary.csv", base / "summary.md"
    elif md_path is None:
        md_path = Path(csv_path).with_suffix(".md")
    inputs.existing_inputs(args.paths)
    if not find_runs(args.paths):
        raise inputs.no_runs(args.paths)
    for p, what in ((csv_path, "--csv"), (md_path, "--md")):
        if p is not None:
            inputs.writable_dir(Path(p).parent, f"the folder of {what}")
    df = write_summary(args.paths, csv_path, md_path, args.target_acc, args.title, args.reference, args.epochs)
    inputs.warn(df)
    if csv_path is None:
        print(markdown_table(df), end="")
    else:
        counts = df["status"].value_counts().to_dict() if len(df) else {}
        print(f"{len(df)} runs {counts} -> {csv_path}, {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
