"""Model factories: ``--model pkg.module:factory`` and ``--model-arg key=value``."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from convdiag.errors import InputError
from convdiag.load.factory import build_model, parse_model_args

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def user_dir(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in the fixtures folder with neither it nor the cwd on sys.path."""
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(FIXTURES))])
    monkeypatch.delitem(sys.modules, "ckpt_usermodels", raising=False)
    monkeypatch.chdir(FIXTURES)
    return FIXTURES


def test_user_factory_found_in_current_directory(user_dir: Path) -> None:
    model = build_model("ckpt_usermodels:tiny", {"width": "6", "in_channels": "2"})
    assert type(model).__name__ == "TinyNet"
    assert model.stem.weight.shape == (6, 2, 3, 3)
    assert os.getcwd() not in sys.path  # the folder was importable for the lookup only


def test_class_spec_and_typed_args(user_dir: Path) -> None:
    model = build_model("ckpt_usermodels:TinyNet", {"width": 5})
    assert model.cls.weight.shape == (1, 5, 1, 1)


@pytest.mark.parametrize(
    ("spec", "args", "expect"),
    [
        ("nocolon", None, "expected pkg.module:function"),
        ("no_such_module_xyz:f", None, "cannot import no_such_module_xyz (ModuleNotFoundError"),
        ("ckpt_usermodels:missing", None, "ckpt_usermodels has no attribute missing"),
        ("ckpt_usermodels:NOT_CALLABLE", None, "NOT_CALLABLE is not callable"),
        ("ckpt_usermodels:broken", None, "the factory raised RuntimeError: boom second line"),
        ("ckpt_usermodels:tiny", {"depth": "3"}, "TypeError"),
        ("ckpt_usermodels:not_a_module", None, "returned int, not a torch.nn.Module"),
    ],
)
def test_factory_errors_are_one_line_input_errors(
    user_dir: Path, spec: str, args: dict[str, str] | None, expect: str
) -> None:
    with pytest.raises(InputError) as info:
        build_model(spec, args)
    msg = str(info.value)
    assert msg.startswith(f"--model {spec}: ")
    assert expect in msg
    assert "\n" not in msg


def test_unexpected_argument_hints_model_arg(user_dir: Path) -> None:
    with pytest.raises(InputError, match=r"depth.*check --model-arg"):
        build_model("ckpt_usermodels:tiny", {"depth": "3"})


def test_reference_detector_factory() -> None:
    model = build_model("convdiag.models:reference", {"head": "P4", "width": "4"})
    out = model(torch.zeros(1, 1, 32, 32))
    assert set(out) == {"P4"} and out["P4"]["cls"].shape == (1, 1, 2, 2)
    # the reference's own InputError comes back naming --model
    with pytest.raises(InputError, match=r"^--model convdiag.models:reference: --head"):
        build_model("convdiag.models:reference", {"head": "P9"})


def test_parse_model_args_conversions() -> None:
    got = parse_model_args(
        {
            "a": "3",
            "b": "-2.5e-3",
            "c": "True",
            "d": "false",
            "e": "None",
            "f": "null",
            "g": "P2",
            "h": '"3"',
            "i": "'x y'",
            "j": " 7 ",
        }
    )
    assert got == {
        "a": 3,
        "b": -2.5e-3,
        "c": True,
        "d": False,
        "e": None,
        "f": None,
        "g": "P2",
        "h": "3",
        "i": "x y",
        "j": 7,
    }
    assert type(got["a"]) is int and type(got["b"]) is float


def test_parse_model_args_keeps_typed_values_and_checks_keys() -> None:
    assert parse_model_args({"w": 3, "s": "4"}) == {"w": 3, "s": 4}  # type: ignore[dict-item]
    with pytest.raises(InputError, match=r"--model-arg 2x=1: '2x' is not a Python identifier"):
        parse_model_args({"2x": "1"})


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_int_round_trip(n: int) -> None:
    assert parse_model_args({"k": str(n)}) == {"k": n}


@given(st.floats(allow_nan=False, allow_infinity=True))
def test_float_round_trip(x: float) -> None:
    text = repr(x)
    value = parse_model_args({"k": text})["k"]
    expected = int(text) if text.lstrip("-").isdigit() else x
    assert value == expected and (math.isinf(x) or value == x)


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzP_/-", min_size=1, max_size=12))
def test_plain_words_stay_strings(word: str) -> None:
    if word.lstrip("-").lower() in ("true", "false", "none", "null", "inf", "infinity", "nan"):
        return
    assert parse_model_args({"k": word}) == {"k": word}
