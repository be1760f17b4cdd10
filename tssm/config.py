"""One run's configuration: every knob of the problem, the split, the solver and the executor.

The same dataclass is filled from CLI flags, a YAML file (``--config``) or the pipeline,
and is validated once, early, with errors that name the bad key and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

METHODS = ("gsadmm", "gsam", "sgd", "adam", "frozen")
TSSM_METHODS = ("gsadmm", "gsam")
BACKPROP_METHODS = ("sgd", "adam")
SCHEDULES = ("batch", "epoch")
P_GRADS = ("fused", "exact")
Q_FORWARDS = ("fresh", "reuse")
SCALINGS = ("paper", "sample")
OPTIMIZERS = ("sgd", "adam")
OPTIMIZER_IMPLS = ("fused", "foreach", "forloop")  # torch.optim's three implementations of one update
BALANCES = ("params", "compute")
DEFAULT_LR = {"sgd": 0.01, "adam": 0.001}


@dataclass
class RunConfig:
    """Everything that determines a run's numbers (and where they go)."""

    # problem
    dataset: str = "digits"
    data_root: str = "data"
    download: bool = True
    n_train: int | None = None  # first rows only, for quick runs (None: all)
    n_test: int | None = None
    model: str = "mlp"
    width: int = 512
    depth: int = 10
    channels: int | None = None
    residual_blocks: int = 24
    init: str = "kaiming"  # "kaiming" (He), "torch" (PyTorch default) or "demo" (authors' demo: N(0, 0.1), zero bias)
    # split
    splits: int = 2
    cuts: list[int] | None = None
    balance: str = "params"  # cuts without explicit `cuts`: "params" (the demo's 5|5) or "compute" (per-step FLOPs)
    balance_workers: int | None = None  # balance per worker holding a contiguous group of subnetworks (None: one each)
    # solver
    method: str = "gsadmm"
    epochs: int = 30
    batch_size: int = 120
    seed: int = 0
    optimizer: str = "adam"  # W-step optimizer of gsadmm/gsam/frozen
    optimizer_impl: str = "fused"  # torch.optim kernel: "fused" (one kernel per step), "foreach" or "forloop"
    lr: float | None = None  # W-step/backprop learning rate; None: 1/tau1 if tau1 is set, else sgd 0.01, adam 0.001
    alpha: float = 1.0
    rho: float = 1.0
    tau1: float | None = None  # the paper's W-step step size 1/tau1 (paper: 100); None: use lr's default
    tau2: float = 100.0
    schedule: str = "batch"  # "batch": p,q,u on minibatch rows every step; "epoch": full data once per epoch
    p_grad: str = "fused"  # "fused": data gradient of p from the W-step's backward; "exact": recomputed after it
    q_forward: str = "fresh"  # "fresh": f_l at the new W, p (paper); "reuse": the W-step's forward (batch schedule)
    scaling: str = "paper"  # "paper": objective averaged over M; "sample": summed (loss gradient not shrunk by 1/M)
    safeguard: float | None = None  # epoch schedule: restore weights if train loss rose by more than this
    # executor
    device: str = "cpu"
    threads: int | None = None
    eval_batch: int = 8192
    eval_every: int = 1  # full train/test metrics every k epochs and at the last; epochs between record timing only
    dist_timeout: float = 300.0  # seconds a rank waits for a peer before giving up
    # recording
    out: str = "results/runs/default"
    tracking_uri: str | None = None
    experiment: str = "tssm"
    mlflow: bool = True
    checkpoint: bool = True
    tags: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ derived
    @property
    def recomputes_output(self) -> bool:
        """Whether a gsADMM/gsAM step runs each subnetwork's forward a second time after its
        W-step (q-step / sweep at the new weights), rather than reusing the W-step's output.
        Every subnetwork but the last pays for it; ``balance: compute`` counts it."""
        return self.method in TSSM_METHODS and not (self.q_forward == "reuse" and self.schedule == "batch")

    @property
    def w_lr(self) -> float:
        """Learning rate of the W-step (or of the backprop baseline)."""
        if self.lr is not None:
            return self.lr
        if self.tau1 is not None and self.method not in BACKPROP_METHODS:
            return 1.0 / self.tau1
        return DEFAULT_LR[self.w_optimizer]

    @property
    def w_optimizer(self) -> str:
        return self.method if self.method in BACKPROP_METHODS else self.optimizer

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def config_hash(self) -> str:
        """Hash of everything that changes the numbers (not where they are written)."""
        skip = {"out", "tracking_uri", "experiment", "mlflow", "checkpoint", "tags", "threads", "data_root", "download"}
        d = {k: v for k, v in self.to_dict().items() if k not in skip}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ building
    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> "RunConfig":
        known = {f.name: f for f in fields(cls)}
        unknown = [k for k in values if k not in known]
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(k, known, n=1)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ConfigError(f"unknown key(s) in {source}: {', '.join(hints)}; valid keys: {', '.join(known)}")
        cfg = cls(**values)
        cfg.validate()
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "RunConfig":
        import yaml

        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys to values, got {type(values).__name__}")
        values.update(overrides)
        return cls.from_dict(values, source=str(path))

    def replace(self, **changes: Any) -> "RunConfig":
        cfg = dataclasses.replace(self, **changes)
        cfg.validate()
        return cfg

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        from .data import DATASETS
        from .models import INITS, MODELS

        def choice(key: str, options: tuple[str, ...]) -> None:
            v = getattr(self, key)
            if v not in options:
                raise ConfigError(f"unknown {key} {v!r}; choose one of {', '.join(options)}")

        choice("dataset", DATASETS)
        choice("model", MODELS)
        choice("method", METHODS)
        choice("schedule", SCHEDULES)
        choice("p_grad", P_GRADS)
        choice("q_forward", Q_FORWARDS)
        choice("scaling", SCALINGS)
        choice("optimizer", OPTIMIZERS)
        choice("optimizer_impl", OPTIMIZER_IMPLS)
        choice("balance", BALANCES)
        choice("init", INITS)
        for key in ("width", "depth", "residual_blocks", "epochs", "batch_size", "eval_batch", "eval_every"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{key} must be a positive integer, got {v!r}")
        for key in ("alpha", "rho", "tau1", "tau2"):
            v = getattr(self, key)
            if key == "tau1" and v is None:
                continue
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                raise ConfigError(f"{key} must be a positive number, got {v!r} (the paper uses alpha=rho=1, tau1=tau2=100)")
        if self.lr is not None and (not isinstance(self.lr, (int, float)) or not self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        if not isinstance(self.splits, int) or isinstance(self.splits, bool) or self.splits < 1:
            raise ConfigError(f"splits must be an integer >= 1 (1 = plain backprop), got {self.splits!r}")
        if self.method in BACKPROP_METHODS and self.splits != 1:
            raise ConfigError(
                f"method {self.method!r} is end-to-end backprop and trains the whole network: use splits=1 "
                f"(got splits={self.splits}); the 'frozen' control or gsadmm/gsam use the split"
            )
        if self.safeguard is not None and not (isinstance(self.safeguard, (int, float)) and self.safeguard > 0):
            raise ConfigError(f"safeguard must be a positive number or null, got {self.safeguard!r}")
        if self.safeguard is not None and self.schedule == "epoch" and self.eval_every != 1:
            raise ConfigError(f"safeguard compares every epoch's training loss with the last one: it needs "
                              f"eval_every=1 (got {self.eval_every}); drop one of the two")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"threads must be a positive integer, got {self.threads!r}")
        for key in ("n_train", "n_test", "balance_workers"):
            v = getattr(self, key)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ConfigError(f"{key} must be a positive integer or null, got {v!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.device not in ("cpu", "cuda", "auto") and not str(self.device).startswith("cuda:"):
            raise ConfigError(f"device must be cpu, cuda, cuda:N or auto, got {self.device!r}")
