"""Publish a finished pipeline config's results into the repository (``docs/results/<name>/``).

``results/`` is git-ignored: what a run of the pipeline found is on the machine that ran it.
Publishing copies what a reader needs -- ``summary.md``, ``summary.csv``, the figures (PNG),
and the tuning's selection where there is one -- into ``docs/results/<name>/`` with a
``MANIFEST.json`` (the source folder, the commit of the checkout it lies in, each file's SHA-256),
so a clone shows the results and the README can quote them. The files are copies, never edited
by hand: publish again to update them.

    tssm publish results/default                 # -> docs/results/default/
    tssm publish results/verdict --to elsewhere/verdict
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

#: What a finished config folder must hold before it is published.
REQUIRED = ("summary.md", "summary.csv")
#: Copied when present (the tuning's selection).
OPTIONAL = ("tuning.md", "tuned.yaml")
#: Where ``tssm publish`` writes unless ``--to`` says otherwise.
DOCS_RESULTS = Path("docs/results")


class PublishError(Exception):
    """Nothing fit to publish (one line: what is missing and how to make it)."""


def publishable(source: Path) -> list[Path]:
    """The files of ``source`` to publish, after checking it is a finished config folder."""
    if not source.is_dir():
        raise PublishError(f"{source} is not a folder; give a config's results folder, e.g. results/default")
    for name in REQUIRED:
        f = source / name
        if not f.is_file() or f.stat().st_size == 0:
            raise PublishError(f"{f} is missing or empty: run the pipeline for this config to its end first "
                               f"(snakemake --configfile config/<name>.yaml)")
    figures = sorted((source / "figures").glob("*.png"))
    if not figures:
        raise PublishError(f"{source / 'figures'} holds no PNG figure: run the pipeline to its end first "
                           f"(its figures rule draws them)")
    return [source / n for n in REQUIRED] + [source / n for n in OPTIONAL if (source / n).is_file()] + figures


def _commit(folder: Path) -> str | None:
    """The commit of the checkout holding ``folder`` (where the results were made), if any."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, cwd=folder)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def publish(source: Path, dest: Path) -> dict:
    """Copy the publishable files of ``source`` into ``dest`` (replacing what a previous
    publish put there) and write ``dest/MANIFEST.json``; returns the manifest."""
    files = publishable(source)
    if dest.exists() and not dest.is_dir():
        raise PublishError(f"{dest} exists and is not a folder; choose another --to")
    if dest.is_dir():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    entries = {}
    for f in files:
        rel = f.relative_to(source)
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest / rel)
        entries[str(rel)] = hashlib.sha256(f.read_bytes()).hexdigest()
    manifest = {"source": str(source), "source_checkout_commit": _commit(source),
                "published_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "files": entries}
    (dest / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def build_parser(prog: str = "tssm publish") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Copy a finished config's summary, figures and tuning "
                                                       "selection into docs/results/<name>/ (committed with the repository).")
    p.add_argument("source", help="the config's results folder, e.g. results/default")
    p.add_argument("--to", help="destination folder (default: docs/results/<name of the source folder>)")
    return p


def main(argv: list[str] | None = None, prog: str = "tssm publish") -> int:
    args = build_parser(prog).parse_args(argv)
    source = Path(args.source)
    dest = Path(args.to) if args.to else DOCS_RESULTS / source.resolve().name
    try:
        manifest = publish(source, dest)
    except PublishError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot write {getattr(e, 'filename', None) or dest}: {e.strerror or e}; choose another --to",
              file=sys.stderr)
        return 2
    print(f"published {len(manifest['files'])} files of {source} -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
