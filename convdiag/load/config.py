"""Project configuration: ``convdiag.toml`` or ``[tool.convdiag]`` in ``pyproject.toml``.

Looked up in the working directory (``convdiag.toml`` wins when both exist). Layout::

    [tool.convdiag]              # or the top level of convdiag.toml
    radius = 3.0                 # defaults of analyze / check options
    threshold = 0.5
    batch = 8

    [tool.convdiag.thresholds]   # diagnosis thresholds (names: see diagnosis.thresholds.Thresholds)
    auc_min = 0.9
    fp_per_image_max = 5

Other tables (e.g. ``[tool.convdiag.check]``) are kept in ``Config.sections`` for the
commands that own them. A file that does not parse, an unknown threshold or default name,
or a value of the wrong type raises InputError naming the file and the key.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convdiag.errors import InputError

# The accepted threshold keys: registered by ``convdiag.diagnosis.thresholds`` on import
# (load/ never imports diagnosis/); None = not registered yet, any name is kept.
_THRESHOLD_NAMES: tuple[str, ...] | None = None


def register_threshold_names(names: tuple[str, ...]) -> None:
    """Set the threshold keys a config file may use (called by the diagnosis core)."""
    global _THRESHOLD_NAMES
    _THRESHOLD_NAMES = tuple(names)


# Option defaults a config file may set, with their types.
DEFAULT_TYPES: dict[str, type] = {
    "radius": float,
    "threshold": float,
    "batch": int,
    "levels": str,
    "max_images": int,
    "fail_on": str,
    # what `check` runs on (paths relative to the config file's folder)
    "data": str,
    "split": str,
    "checkpoint": str,
    "model": str,
    # the label recipe (as the recipe flags)
    "labels": str,
    "kernel": int,
    "sigma": float,
    "trunc": float,
    "schedule": str,
    "loss": str,
    "pos_weight": float,
}


@dataclass
class Config:
    """A loaded configuration: thresholds overrides, option defaults and other sections.

    path: the file read (None: no file found). thresholds: {name: float}; defaults:
    {option: value} for the keys of DEFAULT_TYPES; sections: the remaining tables.
    """

    path: Path | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    def default(self, name: str, fallback: Any) -> Any:
        """The configured default of option ``name``, else ``fallback``."""
        return self.defaults.get(name, fallback)


def find_config(cwd: str | os.PathLike[str] | None = None) -> tuple[Path, dict[str, Any]] | None:
    """(file, table) of the configuration in ``cwd``: convdiag.toml, else pyproject.toml's
    [tool.convdiag]; None when neither holds one."""
    base = Path(cwd) if cwd is not None else Path.cwd()
    own = base / "convdiag.toml"
    if own.is_file():
        return own, _read_toml(own)
    pyproject = base / "pyproject.toml"
    if pyproject.is_file():
        data = _read_toml(pyproject)
        tool = data.get("tool", {})
        if isinstance(tool, dict) and "convdiag" in tool:
            table = tool["convdiag"]
            if not isinstance(table, dict):
                raise InputError(f"{pyproject}: [tool.convdiag] must be a table")
            return pyproject, table
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: not valid TOML ({e})") from None
    except UnicodeDecodeError:  # tomllib decodes the bytes itself
        raise InputError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None


def load_config(
    cwd: str | os.PathLike[str] | None = None, threshold_names: tuple[str, ...] | None = None
) -> Config:
    """Read and validate the configuration of ``cwd`` (see the module docstring).

    ``threshold_names``: the accepted threshold keys (default: the fields of
    ``diagnosis.thresholds.Thresholds``, registered when the diagnosis core is imported).
    """
    found = find_config(cwd)
    if found is None:
        return Config()
    path, table = found
    if threshold_names is None:
        threshold_names = _THRESHOLD_NAMES
    where = "[tool.convdiag]" if path.name == "pyproject.toml" else "the top level"
    cfg = Config(path=path)
    for key, value in table.items():
        if key == "thresholds":
            cfg.thresholds = _thresholds(path, value, threshold_names)
        elif isinstance(value, dict):
            cfg.sections[key] = value
        elif key in DEFAULT_TYPES:
            cfg.defaults[key] = _as_flag(path, key, _typed(path, key, value, DEFAULT_TYPES[key]))
        else:
            known = ", ".join([*DEFAULT_TYPES, "thresholds"])
            raise InputError(f"{path}: unknown key {key!r} in {where} (known: {known})")
    return cfg


def _thresholds(path: Path, value: Any, names: tuple[str, ...] | None) -> dict[str, float]:
    if not isinstance(value, dict):
        raise InputError(f"{path}: 'thresholds' must be a table of numbers")
    out: dict[str, float] = {}
    for k, v in value.items():
        if names is not None and k not in names:
            raise InputError(f"{path}: unknown threshold {k!r} (known: {', '.join(sorted(names))})")
        out[k] = _typed(path, f"thresholds.{k}", v, float)
    return out


# what the flag of the same name accepts, beyond its type (the recipe keys: Recipe's ranges)
_CHOICES = {
    "labels": ("hard", "soft"),
    "loss": ("bce", "focal", "sigmoid-focal"),
    "fail_on": ("info", "warning", "error", "never"),
}
_OPEN_RANGES = {"radius": (0.0, math.inf), "threshold": (0.0, 1.0)}  # exclusive bounds


def _as_flag(path: Path, key: str, value: Any) -> Any:
    """``value`` checked exactly as the flag ``--key`` checks it; InputError naming the file
    and the key (not a flag the user never typed)."""
    from convdiag.load.recipe import check_value

    why = None
    if key in _CHOICES and value not in _CHOICES[key]:
        why = f"use one of {', '.join(_CHOICES[key])}"
    elif key in _OPEN_RANGES and not _OPEN_RANGES[key][0] < value < _OPEN_RANGES[key][1]:
        lo, hi = _OPEN_RANGES[key]
        why = f"must lie strictly between {lo:g} and {hi:g}"
    elif key in ("kernel", "sigma", "trunc", "pos_weight", "batch"):
        try:
            value = check_value(key, value)
        except ValueError as e:
            why = str(e)
    if why is not None:
        raise InputError(f"{path}: {key} = {value!r}: {why}")
    return value


def _typed(path: Path, key: str, value: Any, kind: type) -> Any:
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"{path}: {key} = {value!r} must be a number")
        if not math.isfinite(float(value)):
            raise InputError(f"{path}: {key} = {value!r} must be finite")
        return float(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{path}: {key} = {value!r} must be a positive integer")
        return int(value)
    if not isinstance(value, str):
        raise InputError(f"{path}: {key} = {value!r} must be a string")
    return value
