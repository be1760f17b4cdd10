"""Named sets of settings (``--preset paper``, ``preset: demo``): which values a preset sets
for a method. Each method declares ``paper`` and ``demo`` (``Solver.presets``); ``tuned`` is
what the tuning protocol selected for the grid point (:mod:`tssm.tuning`, read from
``tuned_file``, written by :func:`tssm.tuning.write_selection`). :mod:`tssm.config` resolves a
name for one run (``RunConfig.from_dict``) and records what it set, so run.json and MLflow can
say it.

Order of precedence: the method's defaults < the preset < keys given in the config or on the
command line. ``preset: null`` (the default) keeps the defaults of ``tssm train``, which are
the paper's values except the W-step (Adam, lr 0.001, the demo's) and ``p_grad: fused``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import ConfigError

#: Presets every method declares itself.
DECLARED = ("paper", "demo")
#: Every preset name.
PRESETS = (*DECLARED, "tuned")
#: Where ``preset: tuned`` reads the selection when ``tuned_file`` is not given.
DEFAULT_TUNED_FILE = "results/tuned.yaml"


def tuned_values(path: str | Path, dataset: str, model: str, method: str, splits: int) -> dict[str, Any]:
    """The settings the tuning selected for one grid point (``preset: tuned``)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"preset 'tuned' reads the tuning's selection from {p}, which does not exist; run the "
                          f"pipeline's tuning first (a config with a `tuning:` section) or set tuned_file")
    for s in (yaml.safe_load(p.read_text()) or {}).get("selection", []):
        if (s["dataset"], s["model"], s["method"], int(s["splits"])) == (dataset, model, method, int(splits)):
            return dict(s["settings"])
    raise ConfigError(f"{p} holds no tuned settings for {dataset}/{model}/{method}/n{splits}; tune that point "
                      f"first or choose another preset")
