"""Browse a store with ``mlflow ui``, artifacts included: ``python -m tssm.tracking.ui``.

Runs ``mlflow ui --backend-store-uri sqlite:///<store> --artifacts-destination
<store dir>/mlartifacts`` (:func:`tssm.tracking.store.ui_command`) on 127.0.0.1; a missing
store is one line and exit 2, a store without its ``mlartifacts/`` folder a warning (the
artifacts lists would be empty).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from ..errors import warn
from .store import artifacts_root, ui_command


def experiment_urls(tracking_uri: str, base: str) -> list[tuple[str, str]]:
    """(name, URL of its runs table in Model training mode) of every experiment with runs
    (MLflow 3's UI opens in GenAI mode otherwise: a traces overview, no runs)."""
    from .store import open_client, retry_locked

    client = open_client(tracking_uri)
    return [(e.name, f"{base}/#/experiments/{e.experiment_id}/runs?workflowType=machine_learning")
            for e in retry_locked(client.search_experiments) if e.name != "Default"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tssm.tracking.ui", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", default="results/mlflow.db", help="the sqlite database (default: results/mlflow.db)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--print", action="store_true", help="print the command instead of running it")
    args = p.parse_args(argv)
    uri = f"sqlite:///{args.store}"
    if not Path(args.store).is_file():
        print(f"error: no MLflow store at {args.store}; run the pipeline or `tssm train` first, or name one with "
              f"--store", file=sys.stderr)
        return 2
    if not artifacts_root(uri).is_dir():
        warn(f"{artifacts_root(uri)}/ does not exist: runs will list no artifacts (moved without it?)")
    cmd = [*ui_command(uri), "--host", args.host, "--port", str(args.port)]
    print(" ".join(cmd), flush=True)
    for name, url in experiment_urls(uri, f"http://{args.host}:{args.port}"):
        print(f"  {name}: {url}", flush=True)
    if args.print:
        return 0
    exe = shutil.which("mlflow") or str(Path(sys.executable).parent / "mlflow")
    os.execv(exe, [exe, *cmd[1:]])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
