"""What every config dataclass shares: range rules, TOML reading and merging, and the one config diff. No torch."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import fields
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, released as tomli
    import tomli as tomllib

# Allowed ranges of numeric fields: rule -> (test, words for the error message).
_RULES: dict[str, tuple[Any, str]] = {
    ">=1": (lambda v: v >= 1, "at least 1"),
    ">=0": (lambda v: v >= 0, "0 or more"),
    ">0": (lambda v: v > 0, "above 0"),
    "[0,1)": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "(0,1)": (lambda v: 0 < v < 1, "in (0, 1)"),
    "[0,1]": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "[0,0.5]": (lambda v: 0 <= v <= 0.5, "in [0, 0.5]"),
}


def check_ranges(section: str, obj: Any, rules: dict[str, str]) -> None:
    """Raise ValueError naming the first field of `obj` (a number or a tuple of numbers) outside its rule."""
    for name, rule in rules.items():
        value = getattr(obj, name)
        values = value if isinstance(value, tuple) else (value,)
        test, allowed = _RULES[rule]
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
        if not values or not numbers or not all(test(v) for v in values):
            raise ValueError(f"{section}.{name} = {value!r} is out of range: must be {allowed}")


def read_toml(cls: Any, path: str | Path, base: Any) -> Any:
    path = Path(path)
    try:
        d = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read config: {e}") from None
    try:
        return cls.from_dict(d, base)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: {e}") from None


def merge(obj: Any, d: dict[str, Any], prefix: str) -> Any:
    known = {f.name: f for f in fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if key not in known:
            raise ValueError(f"unknown config key {name!r} (known: {', '.join(known)})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"config key {name!r} must be a table")
            changes[key] = merge(current, value, f"{name}.")
        else:
            changes[key] = _coerce(value, current, name)
    return dataclasses.replace(obj, **changes)


def _coerce(value: Any, current: Any, name: str) -> Any:
    if isinstance(current, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config key {name!r} must be a list, got {value!r}")
        return tuple(value)
    if isinstance(current, bool) or isinstance(value, bool):
        if type(value) is not type(current):
            raise ValueError(f"config key {name!r} must be {type(current).__name__}, got {value!r}")
        return value
    if isinstance(current, float) and isinstance(value, int):
        return float(value)
    if not isinstance(value, type(current)):
        raise ValueError(f"config key {name!r} must be {type(current).__name__}, got {value!r}")
    return value


def differences(have: dict[str, Any], want: dict[str, Any], keys: tuple[str, ...]) -> list[tuple[str, Any, Any]]:
    """(dotted field, have's value, want's value) for every field that differs between two configs' to_dict()s,
    over `keys`: whole sections ("mel") or single fields ("data.labels"). The one config diff: continuing a run,
    fine-tuning a base, guiding with a second model and checking a vocoder's mel all use it."""
    found = []
    for key in keys:
        section, _, name = key.partition(".")
        a, b = have[section], want[section]
        if name:
            found += [(key, a[name], b[name])] if a[name] != b[name] else []
        else:
            found += [(f"{section}.{k}", a[k], b[k]) for k in a if a[k] != b[k]]
    return found
