"""The methods of a summary as tables and figures see them: role, label, style and order.

The role and label come from the records (``run.json``, then the ``role``/``label`` columns
of ``summary.csv``); a record written before methods declared them takes its method's class
from the registry (:func:`fill_roles`), an unregistered method the role ``split``. The style is the one the method's Solver class declares, else one handed
out by position (registry order, then unregistered methods by name), so that every method
present looks like no other. Nothing here, nor in any table or figure, tests a method's name.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import pandas as pd

from ..roles import ROLES, UNKNOWN_ROLE, Role, default_style, role_of


@functools.cache
def registry() -> dict[str, Any]:
    """The registered methods' Solver classes, by name (imported on first use: torch)."""
    from ..solvers import SOLVERS

    return dict(SOLVERS)


class Methods:
    """Role, label, style and order of each method of ``summary`` (rows with ``method`` and,
    where recorded, ``role`` and ``label``); ``extra`` names methods to know beyond them."""

    def __init__(self, summary: pd.DataFrame, extra: Iterable[str] = ()):
        reg = registry()
        names = [m for m in dict.fromkeys([*summary.get("method", pd.Series(dtype=object)), *extra])
                 if isinstance(m, str)]
        recorded = {}
        for col in ("role", "label"):
            if col in summary and len(summary):
                given = summary[["method", col]].dropna()
                recorded[col] = given.groupby("method")[col].agg(lambda s: s.mode().iloc[0]).to_dict()
        self._role: dict[str, str] = {}
        self._label: dict[str, str] = {}
        for m in names:
            cls = reg.get(m)
            role = recorded.get("role", {}).get(m)
            self._role[m] = role if role in ROLES else (cls.reporting_role() if cls else UNKNOWN_ROLE)
            self._label[m] = recorded.get("label", {}).get(m) or ((cls.label or cls.name) if cls else m)
        position = {m: i for i, m in enumerate(reg)}
        unknown = sorted(m for m in names if m not in position)
        position.update({m: len(reg) + i for i, m in enumerate(unknown)})
        roles = list(ROLES)
        self._rank = {m: (roles.index(self._role[m]), position[m]) for m in names}
        declared = {m: dict(c.style) for m, c in reg.items() if c.style}
        taken = {s.get("color") for s in declared.values()}
        # the others by their place among the methods without a style: registry order, then unregistered
        undeclared = [m for m in sorted(position, key=position.get) if m not in declared]
        self._style = {m: declared.get(m) or default_style(undeclared.index(m), taken) for m in names}

    # -- what one method is -------------------------------------------------------------
    def role(self, method: str) -> Role:
        return role_of(self._role.get(method))

    def label(self, method: str) -> str:
        return self._label.get(method, str(method))

    def color(self, method: str) -> str:
        return self.style(method).get("color", "0.3")

    def style(self, method: str) -> dict[str, Any]:
        """The method's matplotlib style (a copy: colour, marker, linestyle, width, zorder ...)."""
        s = dict(self._style.get(method) or default_style(len(self._style)))
        s.setdefault("zorder", 3)
        s.setdefault("linewidth", 1.5)
        return s

    # -- the methods of a role ---------------------------------------------------------
    def order(self, methods: Iterable[Any]) -> list[str]:
        """``methods`` (duplicates and non-names dropped) in table order: by role (:data:`ROLES`),
        then registry order, then name."""
        present = [m for m in dict.fromkeys(methods) if isinstance(m, str)]
        return sorted(present, key=lambda m: (*self._rank.get(m, (len(ROLES), 1 << 20)), m))

    def whole_network(self, method: str) -> bool:
        return self.role(method).whole_network

    def controls(self, methods: Iterable[Any] | None = None) -> list[str]:
        """The control methods among ``methods`` (all known ones if None), in order."""
        return [m for m in self.order(self._role if methods is None else methods) if self.role(m).control]

    def control(self, methods: Iterable[Any] | None = None) -> str | None:
        """The control the split methods are compared with (the first, if several)."""
        found = self.controls(methods)
        return found[0] if found else None

    def baselines(self, methods: Iterable[Any] | None = None) -> list[str]:
        return [m for m in self.order(self._role if methods is None else methods)
                if self.role(m).whole_network and not self.role(m).layerwise]


def fill_roles(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with every run's ``role`` and ``label``: those its record gives, else its
    method's (registry, or an unregistered method's default: see :class:`Methods`)."""
    s = summary.copy()
    for c in ("role", "label"):
        if c not in s:
            s[c] = None
    missing = s["role"].isna() | ~s["role"].isin(list(ROLES)) | s["label"].isna()
    if len(s) and missing.any():
        looks = Methods(s)
        s["role"] = s["role"].where(~missing | s["role"].isin(list(ROLES)), s["method"].map(lambda m: looks.role(m).name))
        s["label"] = s["label"].where(s["label"].notna(), s["method"].map(looks.label))
    return s
