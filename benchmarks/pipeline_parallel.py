"""GPipe baseline, kept as a thin caller of the ``gpipe`` method (``tssm/solvers/gpipe.py``).

The machinery (torch.distributed.pipelining's ScheduleGPipe/Schedule1F1B with a rank per stage,
padding of the ragged last minibatch, the loss scaling that makes the micro-batch gradients add
up to backprop's) now lives in the method; this script only forwards its command line to
``tssm train --method gpipe`` so that callers of the old script (``benchmarks/speedup.py``) keep
working. New code should run the method directly::

    torchrun --nproc-per-node 2 -m tssm train --method gpipe --splits 2 --microbatches 4 ...

Options of the old script that the method does not take are dropped with a note: ``--eval``
(the method's runs evaluate train and test sets as every method's do), ``--eval-batch`` (see
``--chunk-rows``), ``--comm`` (the backend is chosen as for every run), ``--log-steps``.
The run folder is a tssm run folder (``metrics.csv``, ``run.json``); MLflow and checkpoints are
off unless given.
"""

from __future__ import annotations

import sys

#: old option -> how many values it takes; dropped because the method has no such setting
DROPPED = {"--eval": 1, "--eval-batch": 1, "--comm": 1, "--log-steps": 0}


def translate(argv: list[str]) -> list[str]:
    """The old script's arguments as ``tssm train`` arguments for the gpipe method."""
    out, dropped, i = [], [], 0
    while i < len(argv):
        name = argv[i].split("=", 1)[0]
        if name in DROPPED:
            dropped.append(name)
            i += 1 + (DROPPED[name] if "=" not in argv[i] else 0)
            continue
        out.append(argv[i])
        i += 1
    if dropped:
        print(f"note: {', '.join(dropped)} dropped: the gpipe method records what every method records",
              file=sys.stderr)
    defaults = ["--mlflow", "false", "--checkpoint", "false", "--no-progress"]
    return ["train", "--method", "gpipe", *defaults, *out]


def main(argv: list[str] | None = None) -> int:
    from tssm.cli import main as tssm_main

    return tssm_main(translate(list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    sys.exit(main())
