"""Command line: ``tssm train`` runs one configuration (also under torchrun);
``tssm summary``, ``tssm figures``, ``tssm plan`` and ``tssm publish`` are
:mod:`tssm.reporting.summary`, :mod:`tssm.reporting.figures`, :mod:`tssm.grid` and :mod:`tssm.publish`
(the rest of the command line goes to them unchanged).

Every field of :class:`tssm.config.RunConfig` and of each method's settings is a flag
(``--tau1``, ``--p-grad`` ...), grouped as ``--help`` shows;
``--config FILE`` reads a YAML mapping first, and flags given on the command line win.
Errors the user can fix are printed as one line and exit with status 2; a diverged run
exits 3 (its record says so), an interrupted one 4 (the same command resumes it).
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from dataclasses import MISSING, fields
from typing import Any

from . import __version__
from .config import RunConfig
from .settings import field_type
from .errors import NOTHING_TRAINED, Interrupted, TSSMError, guard_start_up


def _parse_bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


def _optional(t):
    def parse(s: str):
        return None if s.lower() in ("none", "null", "") else t(s)
    parse.__name__ = t.__name__
    return parse


def _flag_specs() -> list[tuple[str, type, Any, list[str]]]:
    """(field name, its dataclass, the field, the methods that read it) of every option:
    the common fields of RunConfig, then each method's settings (once, with its readers)."""
    from .solvers import SOLVERS

    specs = [(f.name, RunConfig, f, []) for f in fields(RunConfig) if f.name != "settings"]
    seen: dict[str, list[str]] = {}
    for method, solver in SOLVERS.items():
        for f in fields(solver.Settings):
            if f.name not in seen:
                seen[f.name] = []
                specs.append((f.name, solver.Settings, f, seen[f.name]))
            seen[f.name].append(method)
    return specs


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as the one line every tssm error is (the problem, then where
    the options are listed), instead of a usage block first."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {self.prog}: {message}; see '{self.prog} --help'\n")


def closed_sets() -> dict[str, tuple[str, ...]]:
    """The allowed values of the options whose set is declared outside RunConfig's fields."""
    from .data import DATASETS
    from .models import INITS, MODELS
    from .solvers import SOLVERS

    return {"method": tuple(SOLVERS), "dataset": DATASETS, "model": MODELS, "init": INITS}


def _add_config_flags(p: argparse.ArgumentParser, method: str | None = None) -> None:
    """One flag per option, in groups, with its help, allowed values and default.

    Every flag is accepted; ``--help`` lists the common options and the settings of
    ``method`` only (the settings of the others are hidden: each method reads its own)."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    closed = closed_sets()
    for name, owner, f, readers in _flag_specs():
        meta = f.metadata
        if readers:
            title = "settings of " + ", ".join(readers)
        else:
            title = meta.get("group", "other")
        if title not in groups:
            groups[title] = p.add_argument_group(title)
        g = groups[title]
        base, optional = field_type(owner, name)
        default = f.default if f.default is not MISSING else f.default_factory()
        choices = meta.get("choices") or closed.get(name, ())
        help_ = meta.get("help", "") + (f" {{{', '.join(map(str, choices))}}}" if choices else "") + f" (default: {default})"
        if readers and method not in readers:
            help_ = argparse.SUPPRESS
        flag = "--" + name.replace("_", "-")
        if base is bool:
            g.add_argument(flag, type=_parse_bool, default=None, metavar="BOOL", help=help_)
        elif typing.get_origin(base) is list:
            g.add_argument(flag, type=int, nargs="*", default=None, metavar="BLOCK", help=help_)
        elif typing.get_origin(base) is dict:
            g.add_argument(flag, type=_tag, action="append", default=None, metavar="KEY=VALUE",
                           help=help_ if help_ is argparse.SUPPRESS else meta.get("help", "") + " (repeatable)")
        else:
            typ = _optional(base) if optional else base
            g.add_argument(flag, type=typ, default=None, metavar=name.upper(), help=help_)


def _tag(s: str) -> tuple[str, str]:
    if "=" not in s:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {s!r}")
    key, value = s.split("=", 1)
    return key, value


#: Subcommands that hand the rest of the command line to a module's main(argv, prog).
FORWARDED = {
    "summary": "summary.csv and summary.md of recorded runs",
    "figures": "figures of recorded runs",
    "plan": "the training runs a pipeline config expands into, and what they cost",
    "publish": "copy a finished config's summary and figures into docs/results/<name>/",
}
#: The module of each forwarded subcommand.
FORWARDED_MODULE = {"summary": "reporting.summary", "figures": "reporting.figures", "plan": "grid",
                    "publish": "publish"}


def _forward(command: str, argv: list[str]) -> int:
    import importlib

    return importlib.import_module(f"tssm.{FORWARDED_MODULE[command]}").main(argv, prog=f"tssm {command}")


def _method_asked(argv: list[str] | None) -> str | None:
    """The ``--method`` of a command line, if it names one (it decides which settings --help lists)."""
    argv = sys.argv[1:] if argv is None else argv
    for i, a in enumerate(argv):
        if a == "--method" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--method="):
            return a.split("=", 1)[1]
    return None


def build_parser(method: str | None = None) -> argparse.ArgumentParser:
    """The command line; ``method``: the method whose settings ``tssm train --help`` lists."""
    parser = Parser(prog="tssm", description="Tunable Subnetwork Splitting benchmark")
    parser.add_argument("--version", action="version", version=f"tssm-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    methods = ", ".join(closed_sets()["method"])
    shown = (f"The options below are the common ones and the settings of method {method!r}." if method else
             f"The options below are the common ones; each method adds its own settings, listed by "
             f"'tssm train --method M --help' (M: {methods}).")
    tr = sub.add_parser("train", help="train one configuration and record it",
                        usage="tssm train [--config FILE] [--method M] [OPTION VALUE ...]",
                        description="Train one configuration. Under torchrun, one rank per subnetwork. " + shown)
    tr.add_argument("--config", help="YAML file of run settings; flags override it")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.add_argument("--overwrite", action="store_true",
                    help="train even if --out holds a finished run or another config's record (moved to OUT/.replaced/)")
    _add_config_flags(tr, method)
    for name, what in FORWARDED.items():
        # no options of its own: everything after the subcommand (--help included) is forwarded
        sub.add_parser(name, help=f"{what} (tssm {name} --help)", add_help=False)
    return parser


def _unknown_flags(rest: list[str], parser: argparse.ArgumentParser) -> str:
    """What is wrong with the arguments ``parser`` did not take: each unknown flag, with the
    closest known one."""
    import difflib

    known = [o for a in parser._actions for o in a.option_strings]
    hints = []
    for a in rest:
        flag = a.split("=", 1)[0]
        close = difflib.get_close_matches(flag, known, n=1) if flag.startswith("--") else []
        hints.append(repr(a) + (f" (did you mean {close[0]}?)" if close else ""))
    return "unrecognized argument(s) " + ", ".join(hints)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    given = {name: getattr(args, name) for name, *_ in _flag_specs() if getattr(args, name) is not None}
    if "tags" in given:
        given["tags"] = dict(given["tags"])
    if args.config:
        return RunConfig.from_yaml(args.config, **given)
    return RunConfig.from_dict(given, source="command line")


def main(argv: list[str] | None = None) -> int:
    """``tssm``: the exit status (see the module docstring). Ctrl-C at any point of start-up,
    importing torch included, is the one-line error and exit 4, never a traceback: a process of
    its own (``argv`` None) ends at once (:func:`tssm.errors.exit_before_start`) until training
    starts, which handles Ctrl-C itself."""
    if argv is None:
        guard_start_up()
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print(f"error: {NOTHING_TRAINED}", file=sys.stderr)
        return 4


def _main(argv: list[str] | None) -> int:
    parser = build_parser(_method_asked(argv))
    args, rest = parser.parse_known_args(argv)
    if args.command in FORWARDED:
        return _forward(args.command, rest)
    if rest:
        train = parser._subparsers._group_actions[0].choices[args.command]
        train.error(_unknown_flags(rest, train))
    try:
        if args.command == "train":
            from .run import train

            cfg = config_from_args(args)
            info = train(cfg, progress=not args.no_progress, overwrite=args.overwrite)
            if info.get("nothing_to_do"):
                print(f"note: {info['nothing_to_do']}", file=sys.stderr)
            if info.get("final"):
                final = {k: info["final"][k] for k in ("epoch", "train_acc", "test_acc", "train_time_s") if k in info["final"]}
                print(json.dumps({"status": info["status"], **final}))
            if info["status"] != "finished":  # diverged: a result, recorded as such
                print(f"error: {info.get('reason')}", file=sys.stderr)
                return 3
    except Interrupted as e:  # stopped after a checkpoint: the same command resumes it
        print(f"error: {e}", file=sys.stderr)
        return 4
    except TSSMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a read-only or vanished folder while writing the record
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        print(f"error: cannot write{where}: {e.strerror or e}; free space or choose another --out "
              f"(the run is marked failed where run.json could be written)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
