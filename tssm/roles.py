"""What a method is to the tables and figures: its role, its label and its look (torch-free).

Every method declares on its Solver class (:mod:`tssm.solvers`) a ``role`` from :data:`ROLES`
(or lets its traits decide, see :func:`derived_role`), a display ``label`` and a ``style``.
``run.json`` and ``summary.csv`` carry the role and the label; the reporting package
(:mod:`tssm.reporting`) groups by them and never tests a method's name. A role says how a
method is compared:

``baseline``   end-to-end backprop on the whole network (SGD, Adam): drawn at n = 1 in every
               figure, the reference lines of accuracy versus n, the speedup's reference.
``layerwise``  splits at every layer by construction (dlADMM): n does not apply; drawn at
               n = 1 in the curves and at its own labelled place in accuracy versus n.
``control``    the frozen control (only the last subnetwork learns): every split method is
               compared with it at the same n, seed by seed.
``split``      trains n subnetworks (gsADMM, gsAM, a local-loss method such as DGL): drawn
               at each n, compared with the control.
``pipeline``   end-to-end backprop run as a pipeline of n stages (GPipe): drawn at each n
               like a split method and compared with the control.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Role:
    """How tables and figures treat the methods of one role."""

    name: str
    #: trained on the whole network: drawn at n = 1 whatever split level a figure shows
    whole_network: bool
    #: splits at every layer by construction: the split level n does not apply
    layerwise: bool
    #: the control the split methods are compared with at the same n
    control: bool
    #: compared with the control at the same n, paired by seed
    paired: bool
    doc: str


#: The roles, in the order tables and legends list their methods.
ROLES: dict[str, Role] = {r.name: r for r in (
    Role("baseline", True, False, False, False, "end-to-end backprop on the whole network (n = 1)"),
    Role("layerwise", True, True, False, False, "splits at every layer by construction; n does not apply"),
    Role("control", False, False, True, False, "the control: only the last subnetwork learns"),
    Role("split", False, False, False, True, "trains n subnetworks; compared with the control at the same n"),
    Role("pipeline", False, False, False, True, "backprop as a pipeline of n stages; compared with the control"),
)}

#: The role of a method a record does not name and this checkout does not know.
UNKNOWN_ROLE = "split"


def derived_role(end_to_end: bool, layerwise: bool) -> str:
    """The role a method's traits imply when it declares none."""
    return "layerwise" if layerwise else "baseline" if end_to_end else "split"


def role_of(name: Any) -> Role:
    """The :class:`Role` called ``name`` (an unknown or missing one: :data:`UNKNOWN_ROLE`)."""
    return ROLES.get(name if isinstance(name, str) else "", ROLES[UNKNOWN_ROLE])


# --------------------------------------------------------------------------- default looks
#: Colours, markers and line styles handed out by position (registry order, then unregistered
#: methods by name), so that a method that declares no style still looks like no other.
PALETTE = ("#2ca02c", "#d62728", "#9467bd", "#1f77b4", "#ff7f0e", "#7f7f7f", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")
MARKERS = ("P", "X", "h", "*", "<", ">", "p", "d", "8", "H")
LINESTYLES = ("-", "--", "-.", ":", (0, (3, 1, 1, 1, 1, 1)))


def default_style(index: int, taken: set[str] = frozenset()) -> dict[str, Any]:
    """The look of the ``index``-th method without a declared style: a colour no declared style
    in ``taken`` uses, a marker and a line style, all cycling with ``index``."""
    free = [c for c in PALETTE if c not in taken] or list(PALETTE)
    return {"color": free[index % len(free)], "marker": MARKERS[index % len(MARKERS)],
            "linestyle": LINESTYLES[index % len(LINESTYLES)], "linewidth": 1.5, "zorder": 3}
