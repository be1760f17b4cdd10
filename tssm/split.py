"""Tunable splitting: cut a model's blocks into ``n`` contiguous subnetworks.

``n = 1`` is the whole network (plain backprop), ``n = len(blocks)`` is layerwise. By
default the cuts balance the parameter count (what a device must hold and, for dense
layers, roughly what it must compute); explicit cut points override that.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .errors import ConfigError


def block_sizes(model: nn.Sequential) -> list[int]:
    return [sum(p.numel() for p in block.parameters()) for block in model]


def balanced_cuts(sizes: Sequence[int], n: int) -> list[int]:
    """Cut points (block indices where subnetworks 2..n start) minimising the largest part.

    Exact by dynamic programming over contiguous partitions (the number of blocks is small);
    ties go to the earliest cut, so the split is deterministic.
    """
    k = len(sizes)
    prefix = [0]
    for s in sizes:
        prefix.append(prefix[-1] + s)
    inf = float("inf")
    # best[j][i]: smallest max-part cost of cutting blocks[:i] into j parts.
    best = [[inf] * (k + 1) for _ in range(n + 1)]
    arg = [[0] * (k + 1) for _ in range(n + 1)]
    best[0][0] = 0
    for j in range(1, n + 1):
        for i in range(j, k + 1):
            for c in range(j - 1, i):
                cost = max(best[j - 1][c], prefix[i] - prefix[c])
                if cost < best[j][i]:
                    best[j][i], arg[j][i] = cost, c
    cuts, i = [], k
    for j in range(n, 0, -1):
        i = arg[j][i]
        cuts.append(i)
    return sorted(cuts)[1:]


def check_splits(n: int, num_blocks: int) -> None:
    if not isinstance(n, int) or n < 1 or n > num_blocks:
        raise ConfigError(
            f"splits n={n} is out of range: this model has {num_blocks} blocks, so n must be "
            f"between 1 (plain backprop) and {num_blocks} (layerwise)"
        )


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
    if len(cuts) != n - 1:
        raise ConfigError(f"{len(cuts)} cut points given for n={n} subnetworks; give n-1 = {n - 1}")
    if any(b <= a for a, b in zip([0, *cuts], [*cuts, len(blocks)])):
        raise ConfigError(
            f"cut points {cuts} must be strictly increasing block indices in 1..{len(blocks) - 1}"
        )
    bounds = [0, *cuts, len(blocks)]
    return [nn.Sequential(*blocks[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
