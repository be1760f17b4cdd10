"""Named sets of settings (``--preset paper``, ``preset: demo``): which values a preset sets
for a method. Each method declares its presets (``Solver.presets``); this module resolves a
name for one method and says what it set, so run.json and MLflow can record it.

Order of precedence: the method's defaults < the preset < keys given in the config or on the
command line. ``preset: null`` (the default) keeps the defaults of ``tssm train``, which are
the paper's values except the W-step (Adam, lr 0.001, the demo's) and ``p_grad: fused``.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError

#: Every preset name a method may declare (a method without one keeps its defaults under it).
PRESETS = ("paper", "demo")


def preset_values(name: str, method: str) -> dict[str, Any]:
    """The keys preset ``name`` sets for ``method`` (only keys the method reads)."""
    from .config import method_class, reads

    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)} (or leave it out for "
                          f"the defaults)")
    declared = method_class(method).presets.get(name, {})
    own = reads(method)
    return {k: v for k, v in declared.items() if k in own}


def apply_preset(values: dict[str, Any], method: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``values`` (flat keys, as given) with the preset they name filled in under them, and
    what the preset set (the keys ``values`` did not give)."""
    name = values.get("preset")
    if name is None:
        return values, {}
    if not isinstance(name, str):
        raise ConfigError(f"preset must be a name ({', '.join(PRESETS)}), got {name!r}")
    chosen = {k: v for k, v in preset_values(name, method).items() if k not in values}
    return {**chosen, **values}, chosen
