"""Checks of what a reporting command is given, each failing early with one line (exit 2)."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from ..errors import ConfigError, TSSMError
from .records import STATUSES

#: Statuses worth a warning line: the run's record cannot be counted (diverged and interrupted
#: runs are results, named in the tables' notes).
WARN_STATUSES = ("incomplete", "damaged", "unreadable")


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (no usage block), exit 2."""

    def error(self, message: str):  # noqa: D102
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def target(text: str) -> float:
    """A training-accuracy target: a number in (0, 1]."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < v <= 1 or math.isnan(v):
        raise argparse.ArgumentTypeError(f"a training accuracy lies in (0, 1], got {text}")
    return v


def existing_inputs(paths: Sequence[str | Path]) -> None:
    """Refuse paths that do not exist (a listed run.json/metrics.csv whose file is gone may)."""
    missing = [str(p) for p in paths if not Path(p).exists() and Path(p).name not in ("run.json", "metrics.csv")]
    if missing:
        raise ConfigError(f"no such file or folder: {', '.join(missing)}; give a results folder such as "
                          f"results/default or run directories")


def no_runs(paths: Sequence[str | Path]) -> ConfigError:
    return ConfigError(f"no runs under {', '.join(map(str, paths))} (no run.json, metrics.csv or point.yaml "
                       f"below it); give the folder a config's `results:` names, e.g. results/default")


def writable_dir(path: Path, what: str) -> None:
    """Refuse an output folder that is a file (it is created where missing)."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise ConfigError(f"{what} {path} is not a folder ({p} is a file); choose another")
            return


def warn(summary: pd.DataFrame, limit: int = 20, stream=None) -> None:
    """A warning line per run whose record cannot be counted: where it is, what and why."""
    stream = stream or sys.stderr
    bad = summary[summary["status"].isin(WARN_STATUSES)] if len(summary) else summary
    for r in bad.head(limit).itertuples():
        print(f"warning: {r.run_dir}: {r.status}: {r.reason or 'no reason recorded'} (not averaged)", file=stream)
    if len(bad) > limit:
        print(f"warning: ... and {len(bad) - limit} more runs not averaged (summary.md lists them)", file=stream)


def read_summary_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    """A summary.csv written by ``tssm summary``: refuse one that is missing, empty, cut or
    without the columns ``required``."""
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; write it with `tssm summary <results folder>` first")
    try:
        text = path.read_text()
        if text.strip() and not text.endswith("\n"):
            raise ConfigError(f"{path} is cut (its last row has no line end); rewrite it with "
                              f"`tssm summary <results folder>`")
        df = pd.read_csv(path)
    except ConfigError:
        raise
    except pd.errors.EmptyDataError:
        raise ConfigError(f"{path} is empty; rewrite it with `tssm summary <results folder>`") from None
    except Exception as e:
        raise ConfigError(f"{path} is not a readable csv ({type(e).__name__}: {str(e).splitlines()[0]}); "
                          f"rewrite it with `tssm summary <results folder>`") from None
    lacking = [c for c in required if c not in df.columns]
    if lacking:
        raise ConfigError(f"{path} lacks the column(s) {', '.join(lacking)}: not a summary.csv of `tssm summary`; "
                          f"rewrite it with `tssm summary <results folder>`")
    if not len(df):
        raise ConfigError(f"{path} lists no runs; rewrite it with `tssm summary <results folder>`")
    unknown = sorted(set(df["status"].dropna().astype(str)) - set(STATUSES))
    if df["run_dir"].isna().any() or unknown:
        raise ConfigError(f"{path} is cut or damaged (a row without run_dir, or an unknown status "
                          f"{', '.join(unknown)}); rewrite it with `tssm summary <results folder>`")
    return df


def one_line_errors(main: Callable[[list[str] | None, str], int]) -> Callable[..., int]:
    """``main`` with every user-fixable problem printed as one line and exit status 2."""
    def run(argv: list[str] | None = None, prog: str | None = None) -> int:
        try:
            return main(argv, prog) if prog else main(argv)
        except TSSMError as e:
            print(f"error: {e}", file=sys.stderr)
        except OSError as e:
            where = f" {e.filename}" if getattr(e, "filename", None) else ""
            print(f"error: cannot write{where}: {e.strerror or e}; choose another place", file=sys.stderr)
        return 2
    run.__doc__ = main.__doc__
    return run
