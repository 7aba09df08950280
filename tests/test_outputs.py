"""Output normalisation (DESIGN.md "Model outputs") and resolving user callables."""

from __future__ import annotations

import math
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from convdiag.errors import InputError
from convdiag.load.outputs import LevelOutput, normalize_outputs, resolve_callable

B, H, W = 2, 64, 96


def cls_at(s: int, b: int = B) -> torch.Tensor:
    return torch.randn(b, 1, math.ceil(H / s), math.ceil(W / s))


def reg_at(s: int, b: int = B) -> torch.Tensor:
    return torch.rand(b, 2, math.ceil(H / s), math.ceil(W / s))


def test_all_forms_agree() -> None:
    c, r = cls_at(4), reg_at(4)
    forms = [{"P2": {"cls": c, "reg": r}}, {"cls": c, "reg": r}, (c, r), [c, r]]
    for raw in forms:
        out = normalize_outputs(raw, (H, W))
        assert list(out) == ["P2"]
        assert isinstance(out["P2"], LevelOutput) and out["P2"].stride == 4
        assert out["P2"].cls is c and out["P2"].reg is r
    for raw in (c, (c,), {"cls": c}, {"P2": c}, {"P2": (c,)}):
        out = normalize_outputs(raw, (H, W))
        assert out["P2"].reg is None and out["P2"].cls is c


def test_levels_sorted_fine_to_coarse_and_keys_checked() -> None:
    raw = {"P4": {"cls": cls_at(16)}, "P2": {"cls": cls_at(4), "reg": reg_at(4)}}
    out = normalize_outputs(raw, (H, W))
    assert list(out) == ["P2", "P4"] and [o.stride for o in out.values()] == [4, 16]
    out = normalize_outputs({"p5": cls_at(32), "P3": cls_at(8)}, (H, W))
    assert list(out) == ["P3", "P5"]
    with pytest.raises(InputError, match="key says P3"):
        normalize_outputs({"P3": cls_at(4)}, (H, W))
    with pytest.raises(InputError, match="two outputs at stride 4"):
        normalize_outputs({"P2": cls_at(4), "p2": cls_at(4)}, (H, W))


def test_stride_from_ceil_grid() -> None:
    out = normalize_outputs(torch.zeros(1, 1, 4, 5), (30, 33))  # ceil(30/8), ceil(33/8)
    assert out["P3"].stride == 8


@pytest.mark.parametrize("shape", [(B, 1, 64 // 3, 96 // 3), (B, 1, 16, 48), (B, 1, 5, 5)])
def test_non_power_of_two_stride(shape) -> None:
    with pytest.raises(InputError, match="not a power of two"):
        normalize_outputs(torch.zeros(shape), (H, W))


def test_probs_become_clamped_logits() -> None:
    p = torch.tensor([[[[0.0, 0.25, 0.5, 1.0]]]])
    out = normalize_outputs(p, (1, 4), outputs="probs")["P0"].cls
    assert torch.isfinite(out).all()
    assert out[0, 0, 0, 1].item() == pytest.approx(math.log(0.25 / 0.75), rel=1e-5)
    assert out[0, 0, 0, 2].item() == pytest.approx(0.0, abs=1e-6)
    assert torch.sigmoid(out[0, 0, 0, 3]).item() > 0.999
    with pytest.raises(InputError, match="--outputs"):
        normalize_outputs(p, (1, 4), outputs="scores")


def test_non_finite_passes_through_and_grad_flows() -> None:
    c = cls_at(4).requires_grad_()
    with torch.no_grad():
        c[0, 0, 0, 0] = float("nan")
        c[0, 0, 0, 1] = float("inf")
    out = normalize_outputs((c, None), (H, W))["P2"].cls
    assert out[0, 0, 0, 0].isnan() and out[0, 0, 0, 1].isinf()
    out[1].sum().backward()
    assert c.grad is not None and (c.grad[1] == 1).all()
    half = normalize_outputs(torch.zeros(1, 1, 4, 4, dtype=torch.float16), (16, 16))
    assert half["P2"].cls.dtype == torch.float32


def test_three_dim_cls_is_accepted() -> None:
    out = normalize_outputs(torch.zeros(B, 16, 24), (H, W))
    assert out["P2"].cls.shape == (B, 1, 16, 24)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("text", "is a str"),
        ((cls_at(4), reg_at(4), reg_at(4)), "tuple of length 3"),
        ({"logits": cls_at(4)}, "is a dict with keys"),
        ({}, "empty dict"),
        (torch.zeros(B, 3, 16, 24), "expected \\[B, 1, h, w\\]"),
        ((cls_at(4), torch.zeros(B, 3, 16, 24)), "reg has shape"),
        ((cls_at(4), reg_at(8)), "reg has shape"),
        ((cls_at(4), "reg"), "reg is a str"),
        ({"P2": cls_at(4), "P3": cls_at(8, b=3)}, "batch size"),
    ],
)
def test_wrong_forms_are_input_errors(raw, message) -> None:
    with pytest.raises(InputError, match=message):
        normalize_outputs(raw, (H, W))


def test_batch_size_checked_and_adapter_hint() -> None:
    with pytest.raises(InputError, match="batch size 2 for a batch of 3"):
        normalize_outputs(cls_at(4), (H, W), batch_size=3)
    with pytest.raises(InputError, match="--adapter"):
        normalize_outputs(object(), (H, W))


def test_adapter_is_applied_and_its_failure_reported() -> None:
    c = cls_at(4)

    def adapter(raw):
        return {"cls": raw["heatmap"]}

    out = normalize_outputs({"heatmap": c}, (H, W), adapter=adapter)
    assert out["P2"].cls is c
    with pytest.raises(InputError, match="--adapter adapter failed: KeyError"):
        normalize_outputs({"other": c}, (H, W), adapter=adapter)


# ---------------------------------------------------------------- resolve_callable


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "cd_user_mod.py").write_text(
        textwrap.dedent(
            """
            class Box:
                @staticmethod
                def make(x):
                    return x + 1

            def adapter(raw):
                return raw

            VALUE = 3
            """
        )
    )
    (tmp_path / "cd_broken_mod.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("cd_user_mod", "cd_broken_mod"):
        sys.modules.pop(name, None)


def test_resolve_callable(user_module: Path) -> None:
    assert resolve_callable("cd_user_mod:adapter")(5) == 5
    assert resolve_callable("cd_user_mod:Box.make", "--model")(1) == 2
    assert resolve_callable(str(user_module / "cd_user_mod.py") + ":Box.make")(2) == 3
    from convdiag.models.detector import ReferenceDetector

    build = resolve_callable("convdiag.models:reference", "--model")
    assert isinstance(build(head="P2", width=4), ReferenceDetector)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cd_user_mod", "expected pkg.module:function"),
        ("cd_user_mod:", "expected pkg.module:function"),
        ("cd_no_such_module_xyz:f", r"cannot import cd_no_such_module_xyz \(ModuleNotFound"),
        ("cd_broken_mod:f", "RuntimeError: boom"),
        ("cd_user_mod:missing", "has no attribute missing"),
        ("cd_user_mod:Box.nothing", "has no attribute Box.nothing"),
        ("cd_user_mod:VALUE", "not callable"),
        ("no/such/file.py:f", "no such file"),
    ],
)
def test_resolve_callable_errors(user_module: Path, spec: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as e:
        resolve_callable(spec, "--model")
    assert str(e.value).startswith(f"--model {spec}")
