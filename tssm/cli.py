"""Command line: ``tssm train`` runs one configuration (also under torchrun);
``tssm summary ...`` and ``tssm figures ...`` are :mod:`tssm.summary` and :mod:`tssm.figures`
(the rest of the command line goes to them unchanged).

Every field of :class:`tssm.config.RunConfig` is a flag (``--tau1``, ``--p-grad`` ...);
``--config FILE`` reads a YAML mapping first, and flags given on the command line win.
Errors the user can fix are printed as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from dataclasses import MISSING, fields

from .config import RunConfig
from .errors import TSSMError


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


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(RunConfig)
    for f in fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        optional = union and type(None) in typing.get_args(hint)
        base = next(a for a in typing.get_args(hint) if a is not type(None)) if union else hint
        default = f.default if f.default is not MISSING else f.default_factory()
        help_ = f"(default: {default})"
        if base is bool:
            p.add_argument(flag, type=_parse_bool, default=None, metavar="BOOL", help=help_)
        elif typing.get_origin(base) is list:
            p.add_argument(flag, type=int, nargs="*", default=None, help="block indices where subnetworks 2..n start " + help_)
        elif typing.get_origin(base) is dict:
            p.add_argument(flag, type=lambda s: tuple(s.split("=", 1)), action="append", default=None,
                           metavar="KEY=VALUE", help="extra MLflow tag (repeatable)")
        else:
            typ = _optional(base) if optional else base
            p.add_argument(flag, type=typ, default=None, help=help_)


#: Subcommands that hand the rest of the command line to a module's main(argv, prog).
FORWARDED = {
    "summary": "summary.csv and summary.md of recorded runs",
    "figures": "figures of recorded runs",
}


def _forward(command: str, argv: list[str]) -> int:
    import importlib

    return importlib.import_module(f"tssm.{command}").main(argv, prog=f"tssm {command}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tssm", description="Tunable Subnetwork Splitting benchmark")
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train one configuration and record it",
                        description="Train one configuration. Under torchrun, one rank per subnetwork.")
    tr.add_argument("--config", help="YAML file of run settings; flags override it")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_config_flags(tr)
    for name, what in FORWARDED.items():
        # no options of its own: everything after the subcommand (--help included) is forwarded
        sub.add_parser(name, help=f"{what} (tssm {name} --help)", add_help=False)
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    given = {f.name: getattr(args, f.name) for f in fields(RunConfig) if getattr(args, f.name) is not None}
    if "tags" in given:
        given["tags"] = dict(given["tags"])
    if args.config:
        return RunConfig.from_yaml(args.config, **given)
    return RunConfig.from_dict(given, source="command line")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command in FORWARDED:
        return _forward(args.command, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.command == "train":
            from .run import train

            cfg = config_from_args(args)
            info = train(cfg, progress=not args.no_progress)
            if info.get("final"):
                final = {k: info["final"][k] for k in ("epoch", "train_acc", "test_acc", "train_time_s") if k in info["final"]}
                print(json.dumps({"status": info["status"], **final}))
            if info["status"] != "finished":
                print(f"error: {info.get('reason')}", file=sys.stderr)
                return 3
    except TSSMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
