"""Load one dataset into the data root (downloading it if needed) and write a marker.

Run once per dataset by the pipeline's `prepare_data` rule, before training fans out, so
that parallel jobs never download the same files at once (and cluster jobs, often without
internet, find them on disk).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tssm.files import write_marker


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dataset", required=True)
    p.add_argument("--root", default="data")
    p.add_argument("--marker", required=True, help="JSON file written when the dataset loads")
    args = p.parse_args(argv)

    from tssm.data import load_dataset
    from tssm.errors import TSSMError

    t0 = time.perf_counter()
    try:
        ds = load_dataset(args.dataset, args.root, download=True)
    except TSSMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    info = {
        "dataset": args.dataset,
        "root": str(Path(args.root).resolve()),
        "train": len(ds.x_train),
        "test": len(ds.x_test),
        "input_shape": list(ds.input_shape),
        "num_classes": ds.num_classes,
        "load_s": round(time.perf_counter() - t0, 3),
    }
    return write_marker(args.marker, info)


if __name__ == "__main__":
    sys.exit(main())
