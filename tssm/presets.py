"""Named sets of settings (``--preset paper``, ``preset: demo``): which values a preset sets
for a method. Each method declares ``paper`` and ``demo`` (``Solver.presets``); ``tuned`` is
what the tuning protocol selected for the grid point (:mod:`tssm.tuning`, read from
``tuned_file``). This module resolves a name for one run and says what it set, so run.json
and MLflow can record it.

Order of precedence: the method's defaults < the preset < keys given in the config or on the
command line. ``preset: null`` (the default) keeps the defaults of ``tssm train``, which are
the paper's values except the W-step (Adam, lr 0.001, the demo's) and ``p_grad: fused``.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError

#: Presets every method declares itself.
DECLARED = ("paper", "demo")
#: Every preset name.
PRESETS = (*DECLARED, "tuned")
#: Where ``preset: tuned`` reads the selection when ``tuned_file`` is not given.
DEFAULT_TUNED_FILE = "results/tuned.yaml"


def preset_values(name: str, method: str, point: dict[str, Any] | None = None) -> dict[str, Any]:
    """The keys preset ``name`` sets for ``method`` (only keys the method reads); ``point``
    (the run's flat keys) places a ``tuned`` run: its dataset, model, splits, tuned_file."""
    from .config import method_class, reads

    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)} (or leave it out for "
                          f"the defaults)")
    if name == "tuned":
        from .tuning import tuned_values

        p = point or {}
        splits = p.get("splits") or (1 if method_class(method).end_to_end else 2)
        declared = tuned_values(p.get("tuned_file") or DEFAULT_TUNED_FILE, p.get("dataset", "digits"),
                                p.get("model", "mlp"), method, splits)
    else:
        declared = method_class(method).presets.get(name, {})
    own = reads(method)
    return {k: v for k, v in declared.items() if k in own}


def apply_preset(values: dict[str, Any], method: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``values`` (flat keys, as given) with the preset they name filled in under them, and
    every value the preset sets for ``method`` (what the run records with the preset's name)."""
    name = values.get("preset")
    if name is None:
        return values, {}
    if not isinstance(name, str):
        raise ConfigError(f"preset must be a name ({', '.join(PRESETS)}), got {name!r}")
    declared = preset_values(name, method, values)
    return {**{k: v for k, v in declared.items() if k not in values}, **values}, declared
