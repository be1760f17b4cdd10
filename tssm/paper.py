"""The numbers the paper reports, in one place (torch-free).

Wang, Chai, Cheng, Zhao (2020), "Tunable Subnetwork Splitting for Model-parallelism of
Neural Network Training", restated in ``docs/paper/tssm.md``; the dlADMM values come
from the same paper's Figure 1 (``docs/paper/dladmm.md``). The paper prints no tables for
these: every value was read off its plots (last plotted point, about ± 0.01 in accuracy and
± 0.5 s in time). The paper's TSSM curve is gsADMM at n = 2 (it reports no gsAM result).

Imported by :mod:`tssm.reporting` (figures 1 and 2: stars and dashes) and by
``benchmarks/speedup.py`` (the paper's speedups next to the measured ones); the reference
runs of ``config/fashion-reference.yaml`` are compared with :data:`FIGURE1_FINAL_TRAIN_ACC`.
"""

from __future__ import annotations

__all__ = [
    "FIGURE1_FINAL_TRAIN_ACC",
    "FIGURE1_SETUP",
    "FIGURE1_SPLITS",
    "FIGURE2_FINAL_TRAIN_ACC",
    "FIGURE2_SEC_PER_EPOCH",
    "FIGURE2_SETUP",
    "FIGURE2_SPLITS",
    "figure1_value",
    "figure2_speedup",
]

# --------------------------------------------------------------------------- Figure 1
#: The split level of the paper's Figure 1 (TSSM = gsADMM with two subnetworks).
FIGURE1_SPLITS = 2

#: Model and epochs of each dataset's panel of Figure 1: the MLP (9 hidden layers of 512
#: ReLU units) for 100 epochs on the MNIST family, the CNN for 200 epochs on CIFAR
#: (tssm-paper.md, "Experiment 1").
FIGURE1_SETUP: dict[str, tuple[str, int]] = {
    "mnist": ("mlp", 100), "fashion_mnist": ("mlp", 100), "kmnist": ("mlp", 100),
    "cifar10": ("cnn", 200), "cifar100": ("cnn", 200),
}

#: Final training accuracy read off Figure 1 (tssm-paper.md, table "Final training accuracy
#: read off Figure 1"), keyed dataset -> method. ``gsadmm`` is the paper's TSSM at n = 2;
#: ``dladmm`` is dlADMM (full batch, rho 1e-6), also listed in dladmm.md ("Settings and
#: reference numbers"): MNIST 0.774, Fashion-MNIST 0.733, KMNIST 0.709, CIFAR-10 0.644,
#: CIFAR-100 0.175 (for CIFAR the paper does not say which network dlADMM trained).
FIGURE1_FINAL_TRAIN_ACC: dict[str, dict[str, float]] = {
    "mnist": {"sgd": 1.000, "adam": 0.999, "dladmm": 0.774, "gsadmm": 0.994},
    "fashion_mnist": {"sgd": 0.987, "adam": 0.981, "dladmm": 0.733, "gsadmm": 0.968},
    "kmnist": {"sgd": 1.000, "adam": 0.998, "dladmm": 0.709, "gsadmm": 0.991},
    "cifar10": {"sgd": 0.989, "adam": 0.989, "dladmm": 0.644, "gsadmm": 1.000},
    "cifar100": {"sgd": 0.838, "adam": 0.972, "dladmm": 0.175, "gsadmm": 0.997},
}

def figure1_values(dataset: str, model: str) -> dict[str, float]:
    """The paper's Figure 1 final training accuracy per method for ``dataset`` when it drew
    ``model`` there ({} otherwise: its numbers are for another network)."""
    if FIGURE1_SETUP.get(dataset, (None,))[0] != model:
        return {}
    return dict(FIGURE1_FINAL_TRAIN_ACC.get(dataset, {}))


# --------------------------------------------------------------------------- Figure 2
#: Dataset and model of Figure 2: the ResNet-like network (9x9 conv stride 3, 3x3 max-pool
#: stride 3, 24 residual blocks, average pooling, two 512-unit layers) on CIFAR-10, 500
#: epochs, one GTX 1080 Ti (tssm-paper.md, "Experiment 2").
FIGURE2_SETUP = ("cifar10", "resnet")
#: The split levels of Figure 2.
FIGURE2_SPLITS = (2, 3, 4)

#: Seconds per epoch read off Figure 2(b), keyed (method, n); backprop at n = 1.
FIGURE2_SEC_PER_EPOCH: dict[tuple[str, int], float] = {
    ("sgd", 1): 37.9, ("adam", 1): 49.9, ("gsadmm", 2): 25.8, ("gsadmm", 3): 24.0, ("gsadmm", 4): 22.0,
}

#: Final training accuracy of the Figure 2 runs after 500 epochs (tssm-paper.md: "SGD ~1.00,
#: Adam ~0.85, TSSM n=2/3/4 ~0.96/0.97/0.99"), keyed (method, n).
FIGURE2_FINAL_TRAIN_ACC: dict[tuple[str, int], float] = {
    ("sgd", 1): 1.00, ("adam", 1): 0.85, ("gsadmm", 2): 0.96, ("gsadmm", 3): 0.97, ("gsadmm", 4): 0.99,
}


def figure1_value(dataset: str, method: str) -> float | None:
    """The paper's final Figure 1 training accuracy of ``method`` on ``dataset`` (None if none)."""
    return FIGURE1_FINAL_TRAIN_ACC.get(dataset, {}).get(method)


def figure2_speedup(n: int, baseline: str = "sgd") -> float | None:
    """How much faster per epoch the paper's gsADMM at ``n`` is than ``baseline`` at n = 1 in
    Figure 2(b): 1.47 / 1.58 / 1.72 over SGD at n = 2 / 3 / 4 (1.93 / 2.08 / 2.27 over Adam).
    None where the paper has no such value."""
    base = FIGURE2_SEC_PER_EPOCH.get((baseline, 1))
    tssm = FIGURE2_SEC_PER_EPOCH.get(("gsadmm", n))
    return base / tssm if base and tssm else None
