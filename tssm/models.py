"""The paper's networks, built as an ordered list of blocks so that they can be split.

A model is an ``nn.Sequential`` whose children are *blocks*: the smallest units a cut may
fall between (a layer with its activation, a conv stage with its pooling, a residual
block). ``split.py`` cuts this list into contiguous subnetworks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .errors import ConfigError

MODELS = ("mlp", "cnn", "resnet")
INITS = ("kaiming", "torch", "demo")


def num_blocks(name: str, *, depth: int = 10, residual_blocks: int = 24) -> int:
    """Blocks of model ``name`` (what :func:`build_model` builds: the most subnetworks it can be
    cut into), known without building it."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return {"mlp": depth, "cnn": 5, "resnet": residual_blocks + 4}[name]


def _dense(n_in: int, n_out: int, *, relu: bool = True, flatten: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()] if flatten else []
    layers.append(nn.Linear(n_in, n_out))
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def mlp(input_shape: Sequence[int], num_classes: int, *, width: int = 512, depth: int = 10) -> nn.Sequential:
    """The paper's MLP: ``depth - 1`` hidden ReLU layers of ``width`` units, then the classifier.

    Each linear layer (with its ReLU) is one block, so the MLP has ``depth`` blocks.
    """
    if depth < 1:
        raise ConfigError(f"mlp depth must be >= 1, got {depth}")
    n_in = math.prod(input_shape)
    if depth == 1:
        return nn.Sequential(_dense(n_in, num_classes, relu=False, flatten=True))
    blocks = [_dense(n_in, width, flatten=True)]
    blocks += [_dense(width, width) for _ in range(depth - 2)]
    blocks.append(_dense(width, num_classes, relu=False))
    return nn.Sequential(*blocks)


def _conv_stage(c_in: int, c_out: int) -> nn.Sequential:
    # ceil_mode: an odd side keeps its last row (14 -> 7 -> 4 for Fashion-MNIST at 14x14); on even
    # sides (CIFAR's 32 or 16) it is the plain 2x2 pool
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True))


def cnn(input_shape: Sequence[int], num_classes: int, *, width: int = 512, channels: int = 32) -> nn.Sequential:
    """The paper's CIFAR CNN: two [3x3 conv, ReLU, 2x2 max-pool] stages, two dense ReLU
    layers of ``width`` units and the classifier: five blocks. Any side of at least 4 pixels
    (pooling rounds up: Fashion-MNIST at 14x14 gives 4x4 maps)."""
    c, h, w = input_shape
    if h < 4 or w < 4:
        raise ConfigError(f"cnn needs images of at least 4x4 pixels (two 2x2 pools), got {h}x{w}")
    flat = channels * math.ceil(math.ceil(h / 2) / 2) * math.ceil(math.ceil(w / 2) / 2)
    return nn.Sequential(
        _conv_stage(c, channels),
        _conv_stage(channels, channels),
        _dense(flat, width, flatten=True),
        _dense(width, width),
        _dense(width, num_classes, relu=False),
    )


class ResidualBlock(nn.Module):
    """Two 3x3 conv stages with an identity shortcut (channel count unchanged)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.conv2(self.relu(self.conv1(x))))


def resnet(
    input_shape: Sequence[int], num_classes: int, *, width: int = 512, channels: int = 64, residual_blocks: int = 24
) -> nn.Sequential:
    """The paper's ResNet-like network (Experiment 2): 9x9 conv stride 3, 3x3 max-pool
    stride 3, ``residual_blocks`` residual blocks, average pooling, two dense ReLU layers of
    ``width`` units, classifier. The 9x9 conv is padded by 4 so that the half-resolution
    16x16 CIFAR input still leaves a 2x2 map after the pooling (the paper does not say)."""
    c = input_shape[0]
    stem = nn.Sequential(nn.Conv2d(c, channels, 9, stride=3, padding=4), nn.ReLU(), nn.MaxPool2d(3, stride=3, ceil_mode=True))
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, width), nn.ReLU())
    return nn.Sequential(
        stem,
        *[ResidualBlock(channels) for _ in range(residual_blocks)],
        head,
        _dense(width, width),
        _dense(width, num_classes, relu=False),
    )


def init_demo_(model: nn.Module, std: float = 0.1) -> None:
    """The authors' demo initialisation: weights N(0, std), zero biases."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def init_kaiming_(model: nn.Module) -> None:
    """He initialisation for ReLU networks (weights N(0, 2/fan_in), zero biases): keeps the
    signal's scale through the 10-layer MLP, which PyTorch's default shrinks ~0.4x a layer."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_model(
    name: str,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    width: int = 512,
    depth: int = 10,
    channels: int | None = None,
    residual_blocks: int = 24,
    init: str = "kaiming",
    seed: int = 0,
) -> nn.Sequential:
    """Build ``name`` with weights drawn from ``seed`` (the same for every method)."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if init not in INITS:
        raise ConfigError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    if name in ("cnn", "resnet") and len(input_shape) != 3:
        raise ConfigError(f"model {name!r} needs image input (C, H, W), got shape {tuple(input_shape)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "mlp":
            model = mlp(input_shape, num_classes, width=width, depth=depth)
        elif name == "cnn":
            model = cnn(input_shape, num_classes, width=width, channels=channels or 32)
        else:
            model = resnet(input_shape, num_classes, width=width, channels=channels or 64, residual_blocks=residual_blocks)
        if init == "demo":
            init_demo_(model)
        elif init == "kaiming":
            init_kaiming_(model)
    return model
