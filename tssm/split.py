"""Tunable splitting: cut a model's blocks into ``n`` contiguous subnetworks.

``n = 1`` is the whole network (plain backprop), ``n = len(blocks)`` is layerwise. Without
explicit cut points the cuts minimise the largest part under one of two measures
(``balance``):

- ``params``: the parameter count, what a device must hold. For the paper's MLP on 14x14
  inputs this is the authors' demo's 5 | 5 cut, so it is the default.
- ``compute``: the FLOPs one training step costs each subnetwork, counted by
  ``torch.utils.flop_counter``: forward and backward of every block, plus a second forward
  for every subnetwork but the last when the solver recomputes its output after the W-step
  (gsADMM's q-step, gsAM's sweep, ``q_forward: fresh``). That extra forward is what makes
  the parameter-balanced cut lopsided: the first subnetwork does the most work and the
  others wait for it. With one rank per subnetwork, this is the balance that sets the speed.

With ``balance_workers`` W < n, the n subnetworks are placed as contiguous groups on W
workers (as ``tssm.parallel`` does) and the cuts balance the workers' loads instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .errors import ConfigError


def block_sizes(model: nn.Sequential) -> list[int]:
    return [sum(p.numel() for p in block.parameters()) for block in model]


def min_max_cuts(k: int, n: int, part_cost: Callable[[int, int, int], float]) -> list[int]:
    """Cut points (block indices where parts 2..n start) minimising the costliest part.

    ``part_cost(a, b, j)`` is the cost of blocks ``a..b-1`` as part ``j`` (0-based) of ``n``.
    Exact by dynamic programming over contiguous partitions (the number of blocks is small);
    ties go to the earliest cut, so the split is deterministic.
    """
    inf = float("inf")
    # best[j][i]: smallest max-part cost of cutting blocks[:i] into j parts.
    best = [[inf] * (k + 1) for _ in range(n + 1)]
    arg = [[0] * (k + 1) for _ in range(n + 1)]
    best[0][0] = 0
    for j in range(1, n + 1):
        for i in range(j, k + 1):
            for c in range(j - 1, i):
                cost = max(best[j - 1][c], part_cost(c, i, j - 1))
                if cost < best[j][i]:
                    best[j][i], arg[j][i] = cost, c
    cuts, i = [], k
    for j in range(n, 0, -1):
        i = arg[j][i]
        cuts.append(i)
    return sorted(cuts)[1:]


def _prefix(values: Sequence[float]) -> list[float]:
    out = [0]
    for v in values:
        out.append(out[-1] + v)
    return out


def group_sizes(n: int, workers: int) -> list[int]:
    """Subnetworks per worker when ``n`` are shared by ``workers``: contiguous groups, as
    even as possible, the larger ones first (how ``tssm.parallel`` places them on ranks)."""
    base, extra = divmod(n, workers)
    return [base + (1 if r < extra else 0) for r in range(workers)]


def balanced_split(base: Sequence[float], extra: Sequence[float], n: int, workers: int | None = None) -> list[int]:
    """Cuts into ``n`` subnetworks minimising the largest load of a worker.

    A subnetwork of blocks ``a..b-1`` costs ``sum(base[a:b])``, plus ``sum(extra[a:b])`` unless
    it is the network's last. With ``workers`` < n each worker holds a contiguous group of
    subnetworks (``group_sizes``) and its load is the sum of theirs: the groups are balanced
    first, then each group is cut into its subnetworks, evenly (the last group: so that its
    load is least, evenly among equal loads). Exact (a test checks it against brute force).
    """
    k = len(base)
    B, E = _prefix(base), _prefix(extra)

    def stage(a: int, b: int, final: bool) -> float:
        return B[b] - B[a] + (0 if final else E[b] - E[a])

    if not workers or workers >= n:
        return min_max_cuts(k, n, lambda a, b, j: stage(a, b, j == n - 1))
    sizes = group_sizes(n, workers)

    def even(a: int, b: int, m: int) -> list[int]:
        """Blocks ``a..b-1`` cut into ``m`` subnetworks, none the network's last."""
        return [a + c for c in min_max_cuts(b - a, m, lambda x, y, j: stage(a + x, a + y, False))]

    def inner(a: int, b: int, w: int) -> tuple[list[int], float]:
        """Worker ``w`` holding blocks ``a..b-1``: its subnetworks' cut points and its load."""
        m = sizes[w]
        if b - a < m:
            return [], float("inf")
        if w < workers - 1:  # every subnetwork pays the extra term: the split inside is free
            return even(a, b, m), stage(a, b, False)
        # The last worker holds the network's last subnetwork, which pays no extra term: its
        # load is least when that one starts earliest; among equal loads, the most even split.
        if m == 1:
            return [], stage(a, b, True)
        options = []
        for s in range(a + m - 1, b):  # s: where the last subnetwork starts
            cuts = even(a, s, m - 1) + [s]
            bounds = [a, *cuts, b]
            parts = [stage(x, y, i == m - 1) for i, (x, y) in enumerate(zip(bounds, bounds[1:]))]
            options.append((sum(parts), max(parts), cuts))
        load, _, cuts = min(options, key=lambda o: o[:2])
        return cuts, load

    groups = [0, *min_max_cuts(k, workers, lambda a, b, w: inner(a, b, w)[1]), k]
    cuts: list[int] = []
    for w, (a, b) in enumerate(zip(groups, groups[1:])):
        cuts += ([a] if w else []) + inner(a, b, w)[0]
    return cuts


def balanced_cuts(sizes: Sequence[int], n: int, workers: int | None = None) -> list[int]:
    """Cuts minimising the largest parameter count of a subnetwork (or of a worker)."""
    return balanced_split(sizes, [0] * len(sizes), n, workers)


def block_flops(model: nn.Sequential, input_shape: Sequence[int]) -> list[tuple[int, int]]:
    """(forward, backward) FLOPs of each block for one sample, by ``torch.utils.flop_counter``.

    The backward includes the input gradient for every block but the first (whose input is
    the data): inside a subnetwork it feeds the block before, at a cut it is the p-step's
    data term. Counted at batch size 1 (the counts are linear in the batch); the model's
    gradients are cleared afterwards and nothing else changes (the blocks hold no running
    statistics).
    """
    p0 = next(model.parameters())
    h = torch.zeros(1, *input_shape, device=p0.device, dtype=p0.dtype)
    out_flops = []
    for i, block in enumerate(model):
        x = h.detach().requires_grad_(i > 0)
        with FlopCounterMode(display=False) as fwd:
            out = block(x)
        with FlopCounterMode(display=False) as bwd:
            out.float().sum().backward()
        out_flops.append((fwd.get_total_flops(), bwd.get_total_flops()))
        h = out.detach()
    for p in model.parameters():
        p.grad = None
    return out_flops


def compute_cuts(flops: Sequence[tuple[int, int]], n: int, extra_forward: bool, workers: int | None = None) -> list[int]:
    """Cuts minimising the largest per-step FLOPs of a subnetwork (or of a worker holding a
    group of them); ``extra_forward``: every subnetwork but the last runs its forward twice."""
    return balanced_split([f + b for f, b in flops], [f if extra_forward else 0 for f, _ in flops], n, workers)


def check_splits(n: int, num_blocks: int) -> None:
    if not isinstance(n, int) or n < 1 or n > num_blocks:
        raise ConfigError(
            f"splits n={n} is out of range: this model has {num_blocks} blocks, so n must be "
            f"between 1 (plain backprop) and {num_blocks} (layerwise)"
        )


def check_cuts(cuts: Sequence[int], n: int, num_blocks: int) -> None:
    """Cut points of ``n`` subnetworks: n-1 strictly increasing block indices in 1..num_blocks-1."""
    cuts = list(cuts)
    if len(cuts) != n - 1:
        raise ConfigError(f"{len(cuts)} cut points given for n={n} subnetworks; give n-1 = {n - 1}")
    if any(b <= a for a, b in zip([0, *cuts], [*cuts, num_blocks])):
        raise ConfigError(f"cut points {cuts} must be strictly increasing block indices in 1..{num_blocks - 1}")


def split_model(model: nn.Sequential, n: int, cuts: Sequence[int] | None = None) -> list[nn.Sequential]:
    """Cut ``model`` into ``n`` subnetworks sharing its block modules (no copies).

    ``cuts`` are the block indices where subnetworks 2..n start (strictly increasing, in
    ``1..len(model)-1``); without them the parts are balanced by parameter count.
    """
    blocks = list(model)
    check_splits(n, len(blocks))
    if cuts is None or len(cuts) == 0 and n > 1:
        cuts = balanced_cuts(block_sizes(model), n)
    cuts = list(cuts)
    check_cuts(cuts, n, len(blocks))
    bounds = [0, *cuts, len(blocks)]
    return [nn.Sequential(*blocks[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
