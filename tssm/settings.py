"""How a setting is declared: its type, help, group, allowed values and range, read by the
validation, the CLI's ``--help`` and the pipeline's schema alike; and what a solver reads of
its run's config.

A leaf module (no import of the rest of the package): :mod:`tssm.config` builds the run config
from these declarations and the solvers declare their settings with them, so neither imports
the other to do so.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from .errors import ConfigError


def option(default: Any = dataclasses.MISSING, *, help: str, group: str = "method", choices: tuple = (),
           minimum: float | None = None, positive: bool = False, hint: str = "", describe: str = "",
           factory=None) -> Any:
    """A config field with what the CLI, the validation and the docs need to know about it.

    ``minimum`` (integers) and ``positive`` (numbers) are checked by :func:`check_fields`;
    ``hint`` is appended to the error message (e.g. the paper's value), ``describe`` replaces
    its "a positive integer"."""
    meta = {"help": help, "group": group, "choices": tuple(choices), "minimum": minimum, "positive": positive,
            "hint": hint, "describe": describe}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@functools.lru_cache(maxsize=None)
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # slow (evaluates every annotation): once per class


def field_type(cls: type, name: str) -> tuple[Any, bool]:
    """(base type, optional) of a dataclass field: ``int | None`` -> (int, True)."""
    hint = _type_hints(cls)[name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        return next(a for a in args if a is not type(None)), type(None) in args
    return hint, False


def unknown_choice(key: str, value: Any, options: tuple) -> str:
    """The message for ``value`` outside the closed set ``options`` of ``key``: the allowed
    values, after the likely meant one (another case, '-' for '_', a typo)."""
    names = [str(o) for o in options]
    norm = {n.lower().replace("-", "_"): n for n in names}
    guess = norm.get(str(value).lower().replace("-", "_")) if isinstance(value, str) else None
    if guess is None and isinstance(value, str):
        close = difflib.get_close_matches(value.lower(), names, n=1, cutoff=0.6)
        guess = close[0] if close else None
    hint = f" (did you mean {guess!r}?)" if guess is not None else ""
    return f"unknown {key} {value!r}{hint}; choose one of {', '.join(names)}"


def _type_error(key: str, value: Any, meta: dict, base: Any) -> str | None:
    """Why ``value`` is not a valid ``key`` (None if it is); strict: no strings for numbers,
    no booleans for integers, no NaN or infinity."""
    hint = f" ({meta['hint']})" if meta.get("hint") else ""
    if meta.get("choices"):
        if value not in meta["choices"]:
            return unknown_choice(key, value, meta["choices"])
        return None
    if base is bool:
        return None if isinstance(value, bool) else f"{key} must be true or false, got {value!r}"
    if base is int:
        minimum = meta.get("minimum")
        ok = isinstance(value, int) and not isinstance(value, bool) and (minimum is None or value >= minimum)
        if ok:
            return None
        what = meta.get("describe") or {1: "a positive integer", 0: "a non-negative integer", None: "an integer"}.get(
            minimum, f"an integer >= {minimum}")
        return f"{key} must be {what}, got {value!r}{hint}"
    if base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and (not meta.get("positive") or value > 0):
            return None
        what = "a positive number" if meta.get("positive") else "a finite number"
        return f"{key} must be {what}, got {value!r}{hint}"
    if base is str:
        return None if isinstance(value, str) else f"{key} must be a string, got {value!r}"
    origin = typing.get_origin(base)
    if origin is list:
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return None
        return f"{key} must be a list of integers, got {value!r}"
    if origin is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return None
        return f"{key} must be a mapping of names to values, got {value!r}"
    return None


def check_fields(obj: Any) -> None:
    """Check every field of a config dataclass against its declaration (type, range, choices)."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        base, optional = field_type(type(obj), f.name)
        if value is None and optional:
            continue
        problem = _type_error(f.name, value, f.metadata, base)
        if problem:
            raise ConfigError(problem)


@dataclass
class MethodSettings:
    """Settings of a method that reads none beyond the common ones (its section is empty)."""

    def validate(self) -> None:
        check_fields(self)

    def lr(self, common_lr: float | None, default_optimizer: str) -> tuple[str, float]:
        """(optimizer, learning rate) of the method's gradient steps."""
        return default_optimizer, common_lr if common_lr is not None else DEFAULT_LR[default_optimizer]


DEFAULT_LR = {"sgd": 0.01, "adam": 0.001}


class RunView(Protocol):
    """What a solver reads of its run's config (:class:`tssm.config.RunConfig` is one): the
    method's own settings and a few common fields, nothing else."""

    method: str
    model: str
    splits: int
    seed: int
    batch_size: int
    chunk_rows: int
    optimizer_impl: str
    settings: MethodSettings

    @property
    def w_optimizer(self) -> str: ...

    @property
    def w_lr(self) -> float: ...
