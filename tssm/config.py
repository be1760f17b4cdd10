"""One run's configuration: the problem, the split, training, execution and recording, plus
the settings section of the chosen method.

Settings are scoped to the method that reads them: ``rho`` belongs to gsADMM's section, so
an Adam run neither accepts it nor hashes it. Every field is declared once, with its help
text, its group and its allowed values (:func:`option`); the validation, the CLI's
``--help`` and the pipeline's schema checks all read those declarations. A config is
filled from flat keys (CLI flags, a YAML mapping or a pipeline grid point): a key goes to the
common section or to the method's section, and is refused, naming the methods that read it,
when the chosen method does not.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .presets import DEFAULT_TUNED_FILE, PRESETS, tuned_values
from .settings import MethodSettings, check_fields, field_type, option, unknown_choice

#: Option groups, in the order ``tssm train --help`` lists them.
GROUPS = ("problem", "split", "training", "method", "execution", "tracking")


#: Fields of RunConfig that do not change the numbers (where a run goes, how it is recorded). The
#: data's *content* does: the run identity hashes it (``data_identity``), never its path.
RECORDING = ("data_root", "download", "threads", "out", "tracking_uri", "experiment", "mlflow", "checkpoint", "tags",
             "tuned_file", "checkpoint_every", "system_metrics")
#: Execution knobs that never change the numbers (how long a rank waits for a peer).
EXECUTION_ONLY = ("dist_timeout",)


@dataclass
class RunConfig:
    """Everything that determines a run's numbers (and where they go)."""

    # problem
    dataset: str = option("digits", group="problem", help="dataset (digits is embedded; the others come through torchvision)")
    data_root: str = option("data", group="problem", help="folder of the torchvision datasets")
    download: bool = option(True, group="problem", help="download a dataset that is not on disk")
    n_train: int | None = option(None, group="problem", minimum=1, help="first rows of the training set only (null: all)")
    n_test: int | None = option(None, group="problem", minimum=1, help="first rows of the test set only (null: all)")
    val_fraction: float = option(0.0, group="problem",
                                 help="share of the training rows held out as a validation split (the same rows for "
                                      "every method and seed; never trained on); 0: none")
    model: str = option("mlp", group="problem", help="network (see README: the paper's MLP, CNN, ResNet-like)")
    width: int = option(512, group="problem", minimum=1, help="units per hidden layer (mlp, and the dense layers of cnn/resnet)")
    depth: int = option(10, group="problem", minimum=1, help="layers of the mlp (each one block)")
    channels: int | None = option(None, group="problem", minimum=1, help="channels of the resnet (null: 64)")
    residual_blocks: int = option(24, group="problem", minimum=1, help="residual blocks of the resnet")
    init: str = option("kaiming", group="problem", help="weight initialisation: He (kaiming), PyTorch's default (torch) "
                       "or the authors' demo, N(0, 0.1) with zero bias (demo)")
    # split
    splits: int | None = option(None, group="split", minimum=1, hint="1 = plain backprop", describe="an integer >= 1",
                                help="number of subnetworks n (1 = plain backprop; default 1 for end-to-end methods, else 2)")
    cuts: list[int] | None = option(None, group="split", help="block indices where subnetworks 2..n start (null: balanced)")
    balance: str = option("params", group="split", choices=("params", "compute"),
                          help="what balanced cuts even out: parameter count (the demo's 5|5) or per-step FLOPs")
    balance_workers: int | None = option(None, group="split", minimum=1,
                                         help="balance the load of this many workers, each holding a contiguous group of subnetworks")
    # training (every method)
    method: str = option("gsadmm", group="training", help="training method")
    preset: str | None = option(None, group="training", choices=PRESETS,
                                help="a named set of settings under the ones given: paper (the paper's text), demo "
                                     "(the authors' code), tuned (the tuning's selection, from tuned_file); null: the "
                                     "defaults (README, 'Presets')")
    tuned_file: str | None = option(None, group="training",
                                    help="the tuning's selection that preset 'tuned' reads (null: results/tuned.yaml)")
    epochs: int = option(30, group="training", minimum=1, help="passes over the training set")
    batch_size: int = option(120, group="training", minimum=1, help="minibatch rows per step")
    seed: int = option(0, group="training", minimum=0, help="seed of the initial weights and the data order")
    optimizer_impl: str = option("fused", group="training", choices=("fused", "foreach", "forloop"),
                                 help="torch.optim implementation of the same update (they differ in rounding only)")
    lr: float | None = option(None, group="training", positive=True,
                              help="learning rate of the gradient steps (null: 1/tau1 if set, else sgd 0.01, adam 0.001)")
    # execution
    device: str = option("cpu", group="execution", help="cpu, cuda, cuda:N or auto")
    dtype: str = option("float32", group="execution", choices=("float32", "float64"),
                        help="precision of the weights, data and auxiliary variables (float64: a control for "
                             "whether small updates are signal or rounding)")
    threads: int | None = option(None, group="execution", minimum=1, help="CPU threads per worker (null: cores / workers)")
    flush_denormal: bool = option(True, group="execution",
                                  help="flush subnormal floats (< 1.2e-38) to zero on CPU: Adam's moments of dead units "
                                       "decay into them and make x86 arithmetic 3-10x slower; false: IEEE gradual underflow")
    chunk_rows: int = option(8192, group="execution", minimum=1,
                             help="rows per forward pass when a whole set goes through a network (evaluation, full-data steps)")
    eval_every: int = option(1, group="execution", minimum=1,
                             help="full train/test metrics every k epochs and at the last (timing is recorded every epoch; a run with a safeguard evaluates every epoch)")
    dist_timeout: float = option(300.0, group="execution", positive=True, help="seconds a rank waits for a peer before giving up")
    tf32: bool = option(False, group="execution",
                        help="CUDA: float32 matrix products and convolutions in TF32 (faster on Ampere and later, "
                             "about 1e-3 relative rounding); false: true float32 (CPU: no effect)")
    # recording
    out: str = option("results/runs/default", group="tracking", help="run folder (metrics.csv, run.json, checkpoints)")
    tracking_uri: str | None = option(None, group="tracking",
                                      help="MLflow tracking URI (null: $MLFLOW_TRACKING_URI, else sqlite:///results/mlflow.db)")
    experiment: str = option("tssm", group="tracking", help="MLflow experiment")
    mlflow: bool = option(True, group="tracking", help="record the run in MLflow")
    checkpoint: bool = option(True, group="tracking", help="checkpoint every checkpoint_every epochs and resume from it")
    checkpoint_every: int = option(1, group="tracking", minimum=1,
                                   help="epochs between checkpoints (also at a stop by signal); larger for big "
                                        "auxiliary state on slow shared disks (a requeued job reruns up to this many - 1)")
    system_metrics: bool = option(False, group="tracking", help="MLflow system metrics: CPU, memory, disk, network, GPU sampled every 10 s")
    tags: dict[str, str] = option(group="tracking", factory=dict, help="extra MLflow tags")
    # the chosen method's section (its Settings dataclass); filled from flat keys by from_dict
    settings: MethodSettings | None = field(default=None, repr=False)

    def __post_init__(self):
        if isinstance(self.method, str) and self.method in method_names():
            if self.settings is None:
                self.settings = method_class(self.method).Settings()
            if self.splits is None:  # 1 for an end-to-end method, 2 for a split method
                self.splits = 1 if method_class(self.method).end_to_end else 2

    # ------------------------------------------------------------------ derived
    def __getattr__(self, name: str) -> Any:
        """Read access to the method's settings (``cfg.rho``); an error naming the method
        when it has no such setting."""
        if name.startswith("__") or name == "settings":
            raise AttributeError(name)
        settings = self.__dict__.get("settings")
        if settings is not None and name in {f.name for f in fields(settings)}:
            return getattr(settings, name)
        raise AttributeError(f"{type(self).__name__} has no field {name!r} (method {self.__dict__.get('method')!r} "
                             f"does not read it)")

    @property
    def method_class(self):
        return method_class(self.method)

    @property
    def recomputes_output(self) -> bool:
        """Whether a step runs each subnetwork's forward a second time after its W-step
        (the method's answer; ``balance: compute`` counts it)."""
        return self.method_class.recomputes_output(self.settings)

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    @property
    def w_optimizer(self) -> str:
        return self.settings.lr(self.lr, self.method_class.default_optimizer)[0]

    @property
    def w_lr(self) -> float:
        """Learning rate of the W-step (or of the backprop baseline)."""
        return self.settings.lr(self.lr, self.method_class.default_optimizer)[1]

    def to_dict(self) -> dict[str, Any]:
        """Flat: the common fields, then the method's settings (what run.json records)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "settings"}
        d.update(asdict(self.settings) if self.settings is not None else {})
        return json.loads(json.dumps(d))  # plain data (lists, not tuples)

    def hyperparameters(self) -> dict[str, Any]:
        """What changes the numbers: ``to_dict`` without where the run goes and how it is
        recorded, the pure execution knobs, and the common fields the method ignores (dlADMM
        takes no ``lr`` or ``batch_size``)."""
        skip = {*RECORDING, *EXECUTION_ONLY, *self.method_class.ignores}
        return {k: v for k, v in self.to_dict().items() if k not in skip}

    def config_hash(self) -> str:
        """The run identity: a hash of everything that changes the numbers -- the common fields
        and the chosen method's section (nothing another method reads; the preset's name is
        not in it, only the values it set) and the content of the data files
        (:func:`tssm.data.data_identity`: their checksums, not their path)."""
        from .data import data_identity

        values = {k: v for k, v in self.hyperparameters().items() if k != "preset"}
        values["data"] = data_identity(self.dataset, self.data_root)
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]

    def preset_values(self) -> dict[str, Any]:
        """Every value the preset sets for this method (what run.json records with its name):
        resolved once, when the config was built, so the record is what trained even if
        ``tuned_file`` changes meanwhile."""
        if "_preset_values" in self.__dict__:
            return dict(self.__dict__["_preset_values"])
        resolved = preset_values(self.preset, self.method, self.to_dict()) if self.preset is not None else {}
        self.__dict__["_preset_values"] = resolved
        return dict(resolved)

    # ------------------------------------------------------------------ building
    @classmethod
    def common_keys(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "settings"]

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> "RunConfig":
        """A validated config from flat keys; each key is a common field or a setting of the
        chosen method."""
        values = dict(values)
        method = values.get("method", "gsadmm")
        if not isinstance(method, str) or method not in method_names():
            raise ConfigError(unknown_choice("method", method, method_names()))
        # the preset is resolved here, once: the config and its record both use these values
        values, declared = apply_preset(values, method)
        common = {k: values.pop(k) for k in cls.common_keys() if k in values}
        settings_cls = method_class(method).Settings
        own = {f.name for f in fields(settings_cls)}
        scoped = {k: values.pop(k) for k in list(values) if k in own}
        if values:
            raise ConfigError(_unknown_keys_message(values, method, source, cls.common_keys() + sorted(own)))
        cfg = cls(**common, settings=settings_cls(**scoped))
        cfg.__dict__["_preset_values"] = declared
        cfg.validate()
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "RunConfig":
        import yaml

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist or is not a file")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys to values, got {type(values).__name__}")
        values.update(overrides)
        return cls.from_dict(values, source=str(path))

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with some flat keys changed (common or the method's)."""
        values = self.to_dict()
        if "method" in changes and changes["method"] != self.method:  # the other method's defaults
            values = {k: v for k, v in values.items() if k in self.common_keys() and k != "splits"}
        return type(self).from_dict({**values, **changes})

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        from .data import DATASETS
        from .models import INITS, MODELS

        for key, options in (("method", method_names()), ("dataset", DATASETS), ("model", MODELS), ("init", INITS)):
            if getattr(self, key) not in options:
                raise ConfigError(unknown_choice(key, getattr(self, key), options))
        check_fields(self)
        if not isinstance(self.settings, self.method_class.Settings):
            raise ConfigError(f"method {self.method!r} takes {self.method_class.Settings.__name__}, "
                              f"got {type(self.settings).__name__}")
        self.settings.validate()
        self.method_class.check(self)
        for key in self.method_class.ignores:
            if getattr(self, key) != RunConfig.__dataclass_fields__[key].default:
                raise ConfigError(f"method {self.method!r} does not read {key} (got {getattr(self, key)!r}); leave it out")
        if self.method_class.layerwise and self.splits != 1:
            raise ConfigError(f"method {self.method!r} splits the network at every layer by construction: the split "
                              f"level does not apply; use splits=1 or leave it out (got splits={self.splits})")
        if self.method_class.end_to_end and self.splits != 1:
            raise ConfigError(
                f"method {self.method!r} is end-to-end backprop and trains the whole network: use splits=1 "
                f"(got splits={self.splits}); the 'frozen' control or gsadmm/gsam use the split"
            )
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1): the share of training rows held out for validation "
                              f"(got {self.val_fraction})")
        if not self.out.strip():
            raise ConfigError("out must name a run folder, got an empty string (it would write into the current "
                              "directory); pass --out results/runs/NAME")
        if self.seed >= 2**31:
            raise ConfigError(f"seed must be below 2**31, got {self.seed}")
        if self.device not in ("cpu", "cuda", "auto") and not str(self.device).startswith("cuda:"):
            raise ConfigError(f"device must be cpu, cuda, cuda:N or auto, got {self.device!r}")


def _unknown_keys_message(values: dict[str, Any], method: str, source: str, known: list[str]) -> str:
    """Name each unknown key: another method's setting (say which), or a likely typo."""
    readers = {}
    for name in method_names():
        for f in fields(method_class(name).Settings):
            readers.setdefault(f.name, []).append(name)
    hints = []
    for k in values:
        if k in readers:
            hints.append(f"{k!r} is a setting of {', '.join(readers[k])}, not of method {method!r}")
        else:
            close = difflib.get_close_matches(k, known + list(readers), n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    if all(k in readers for k in values):
        return f"in {source}: " + "; ".join(hints)
    return f"unknown key(s) in {source}: {', '.join(hints)}; valid keys: {', '.join(known)}"


def preset_values(name: str, method: str, point: dict[str, Any] | None = None) -> dict[str, Any]:
    """The keys preset ``name`` sets for ``method`` (only keys the method reads); ``point``
    (the run's flat keys) places a ``tuned`` run: its dataset, model, splits, tuned_file."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)} (or leave it out for "
                          f"the defaults)")
    if name == "tuned":
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


def method_names() -> tuple[str, ...]:
    from .solvers import SOLVERS

    return tuple(SOLVERS)


def method_class(name: str):
    from .solvers import SOLVERS

    return SOLVERS[name]


# ---------------------------------------------------------------------- for the pipeline
#: Fields the pipeline sets itself from a grid point (a config's `run:` may not set them).
PIPELINE_FIELDS = ("dataset", "model", "method", "splits", "seed", "epochs", "out", "data_root", "download",
                   "tracking_uri", "experiment", "tags")


def setting_owners() -> dict[str, tuple[type, Any]]:
    """Every settable key with (the dataclass declaring it, its field): RunConfig's common
    fields, then each method's settings (a shared one once)."""
    out: dict[str, tuple[type, Any]] = {f.name: (RunConfig, f) for f in fields(RunConfig) if f.name != "settings"}
    for name in method_names():
        settings = method_class(name).Settings
        for f in fields(settings):
            out.setdefault(f.name, (settings, f))
    return out


def reads(method: str) -> set[str]:
    """The keys a run of ``method`` reads: the common fields it does not ignore and its own settings."""
    cls = method_class(method)
    return (set(RunConfig.common_keys()) - set(cls.ignores)) | {f.name for f in fields(cls.Settings)}


def json_schema_of(owner: type, f: Any) -> dict[str, Any]:
    """A field's declaration as JSON schema (for the pipeline's config validation)."""
    base, optional = field_type(owner, f.name)
    meta = f.metadata
    if meta.get("choices"):
        schema: dict[str, Any] = {"enum": list(meta["choices"])}
    elif base is bool:
        schema = {"type": "boolean"}
    elif base is int:
        schema = {"type": "integer", **({"minimum": meta["minimum"]} if meta.get("minimum") is not None else {})}
    elif base is float:
        schema = {"type": "number", **({"exclusiveMinimum": 0} if meta.get("positive") else {})}
    elif typing.get_origin(base) is list:
        schema = {"type": "array", "items": {"type": "integer", "minimum": 1}}
    elif typing.get_origin(base) is dict:
        schema = {"type": "object", "additionalProperties": {"type": "string"}}
    else:
        schema = {"type": "string"}
    if meta.get("help"):
        schema["description"] = meta["help"]
    if optional:  # keywords like minimum or items apply to their own type only, so null passes them
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
        else:
            schema["type"] = [schema["type"], "null"]
    return schema


def pipeline_schema(base: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's config schema ``base`` with the method list and the `run:` settings
    filled in from the package's declarations (so a new method or setting needs no schema edit)."""
    schema = json.loads(json.dumps(base))
    defs = schema["$defs"]
    defs["method"] = {"type": "string", "enum": list(method_names())}
    defs["run"]["properties"] = {k: json_schema_of(owner, f) for k, (owner, f) in setting_owners().items()
                                 if k not in PIPELINE_FIELDS}
    return schema
