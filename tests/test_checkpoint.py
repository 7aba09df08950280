"""Checkpoints: convdiag's own format, user formats, and refusing code-running pickles."""

from __future__ import annotations

import hashlib
import json
import pickle
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from convdiag.errors import InputError
from convdiag.load.checkpoint import (
    PREFIXES,
    describe_unsafe_globals,
    head_keys,
    load_checkpoint,
    match_prefixes,
    read_safetensors,
    save_checkpoint,
)

FIXTURES = Path(__file__).parent / "fixtures"
TINY = "ckpt_usermodels:tiny"


@pytest.fixture(autouse=True)
def _user_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FIXTURES))


def tiny(width: int = 4, seed: int = 0) -> nn.Module:
    from ckpt_usermodels import TinyNet

    torch.manual_seed(seed)
    return TinyNet(width)


def same_weights(a: nn.Module | dict[str, torch.Tensor], b: nn.Module) -> bool:
    sa = a if isinstance(a, dict) else a.state_dict()
    sb = b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


# ------------------------------------------------------------------ convdiag format


def test_convdiag_round_trip(tmp_path: Path) -> None:
    net = tiny(6)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net(torch.rand(2, 1, 8, 8))["cls"].sum().backward()
    opt.step()
    recipe = {"head": "P2", "labels": "soft", "kernel": 3, "sigma": 1.0, "schedule": None}
    rng = {"torch": torch.get_rng_state(), "numpy": np.arange(4, dtype=np.uint32)}
    path = tmp_path / "ckpt.pt"
    save_checkpoint(
        path, net, TINY, {"width": 6}, recipe,
        meta={"step": 5, "steps": 10, "interrupted": False, "loss": np.float32(0.5)},
        optimizer_state=opt.state_dict(), rng_state=rng,
    )  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temp file left

    raw = torch.load(path, weights_only=True)  # the format promise, checked with torch alone
    assert raw["format"] == "convdiag-checkpoint" and raw["version"] == 1
    assert raw["model"] == {"factory": TINY, "args": {"width": 6}}
    assert raw["meta"]["convdiag_version"] and raw["meta"]["loss"] == 0.5
    assert raw["rng"]["numpy"].dtype == torch.uint32
    assert raw["rng"]["numpy"].tolist() == [0, 1, 2, 3]

    with pytest.raises(InputError, match="refusing to import code named by the file"):
        load_checkpoint(path)  # a user's factory named by the file is not imported unasked
    assert load_checkpoint(path, trust=True).factory == TINY
    loaded = load_checkpoint(path, TINY)  # the user names the same factory: its stored args
    assert loaded.format == "convdiag" and loaded.factory == TINY
    assert loaded.factory_args == {"width": 6} and loaded.recipe == recipe
    assert loaded.meta["step"] == 5 and loaded.meta["interrupted"] is False
    assert loaded.missing_keys == [] and loaded.unexpected_keys == []
    assert not loaded.model.training
    assert same_weights(net, loaded.model)
    x = torch.rand(1, 1, 8, 8)
    assert torch.equal(net(x)["cls"], loaded.model(x)["cls"])
    fresh = torch.optim.Adam(loaded.model.parameters(), lr=1e-2)
    assert loaded.optimizer_state is not None
    fresh.load_state_dict(loaded.optimizer_state)
    assert torch.equal(loaded.rng_state["torch"], rng["torch"])  # type: ignore[index]


def test_convdiag_model_args_override_and_bad_payload(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, tiny(4), TINY, {"width": 4}, {})
    # a --model-arg that changes the architecture no longer fits the weights
    with pytest.raises(InputError, match=r"stem.weight has shape \[4, 1, 3, 3\] in the checkpoint"):
        load_checkpoint(path, TINY, model_args={"width": "5"})
    with pytest.raises(TypeError, match=r"meta\['bad'\]"):
        save_checkpoint(tmp_path / "d.pt", tiny(), TINY, {}, {}, meta={"bad": object()})
    with pytest.raises(InputError, match="cannot write"):
        save_checkpoint(tmp_path / "no" / "dir" / "x.pt", tiny(), TINY, {}, {})


def test_convdiag_reference_detector_round_trip(tmp_path: Path) -> None:
    from convdiag.load.factory import build_model

    args = {"head": "fused", "width": 4, "prior": 0.001, "bias_init": "prior"}
    net = build_model("convdiag.models:reference", args)
    path = tmp_path / "ref.pt"
    save_checkpoint(path, net, "convdiag.models:reference", args, {"head": "fused"})
    loaded = load_checkpoint(path)
    assert same_weights(net, loaded.model)
    assert head_keys(loaded.model) == set(net.head_parameter_names()["cls"])
    # a checkpoint whose file lost the head of the reference is refused
    state = {k: v for k, v in net.state_dict().items() if ".cls." not in k}
    torch.save(state, tmp_path / "nohead.pt")
    with pytest.raises(InputError, match=r"no classification head .*heads\.P\d\.cls"):
        load_checkpoint(tmp_path / "nohead.pt", "convdiag.models:reference", args)


def test_newer_version_and_factory_failure(tmp_path: Path) -> None:
    path = tmp_path / "v.pt"
    save_checkpoint(path, tiny(), TINY, {}, {})
    obj = torch.load(path, weights_only=True)
    torch.save({**obj, "version": 9}, tmp_path / "v9.pt")
    with pytest.raises(InputError, match="version 9 is newer"):
        load_checkpoint(tmp_path / "v9.pt")
    obj["model"]["factory"] = "gone_module_xyz:make"
    torch.save(obj, tmp_path / "gone.pt")
    with pytest.raises(InputError, match=r"gone\.pt: factory gone_module_xyz:make: cannot import"):
        load_checkpoint(tmp_path / "gone.pt", trust=True)
    # an explicit --model replaces a factory that moved
    loaded = load_checkpoint(tmp_path / "gone.pt", TINY)
    assert loaded.factory == TINY and same_weights(tiny(), loaded.model)


# ------------------------------------------------------------------ plain state dicts


def test_plain_state_dict_needs_model(tmp_path: Path) -> None:
    net = tiny(5, seed=3)
    path = tmp_path / "weights.bin"  # extension says nothing: content is sniffed
    torch.save(net.state_dict(), path)
    with pytest.raises(InputError, match=r"weights\.bin is a plain state dict: pass --model"):
        load_checkpoint(path)
    loaded = load_checkpoint(path, TINY, {"width": "5"})
    assert loaded.format == "state_dict" and loaded.factory_args == {"width": 5}
    assert same_weights(net, loaded.model) and loaded.recipe is None


def test_legacy_serialization_and_wrapper_keys(tmp_path: Path) -> None:
    net = tiny(seed=4)
    path = tmp_path / "legacy.pth"
    torch.save({"model_state_dict": net.state_dict(), "epoch": 3}, path,
               _use_new_zipfile_serialization=False)  # fmt: skip
    loaded = load_checkpoint(path, TINY)
    assert same_weights(net, loaded.model)
    assert "weights taken from 'model_state_dict'" in loaded.notes


@pytest.mark.parametrize(
    "prefix", ["module.", "_orig_mod.", "module._orig_mod.", "model.module.", "ema.model."]
)
def test_prefixes_are_stripped(tmp_path: Path, prefix: str) -> None:
    net = tiny(seed=5)
    state = OrderedDict((prefix + k, v) for k, v in net.state_dict().items())
    torch.save({"state_dict": state}, tmp_path / "p.pt")
    loaded = load_checkpoint(tmp_path / "p.pt", TINY)
    assert same_weights(net, loaded.model)
    assert loaded.missing_keys == [] and loaded.unexpected_keys == []


def test_torch_compile_state_dict(tmp_path: Path) -> None:
    net = tiny(seed=6)
    compiled = torch.compile(net)  # compiles lazily: state_dict() only adds the prefix
    keys = list(compiled.state_dict())
    assert all(k.startswith("_orig_mod.") for k in keys)
    torch.save(compiled.state_dict(), tmp_path / "c.pt")
    assert same_weights(net, load_checkpoint(tmp_path / "c.pt", TINY).model)


KEYS = st.lists(
    st.lists(st.sampled_from(["stem", "cls", "reg", "conv", "bn", "0", "1"]), min_size=1,
             max_size=3).map(lambda parts: ".".join(parts) + ".weight"),
    min_size=1, max_size=8, unique=True,
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(KEYS, st.lists(st.sampled_from(list(PREFIXES)), max_size=3))
def test_match_prefixes_recovers_wrapped_keys(keys: list[str], wraps: list[str]) -> None:
    wrapped = keys
    for p in wraps:
        wrapped = [p + k for k in wrapped]
    mapping, _changes = match_prefixes(wrapped, keys)
    assert sorted(mapping.values()) == sorted(keys)


# ------------------------------------------------------------------ Lightning


def lightning_like(net: nn.Module) -> dict[str, Any]:
    """Laid out as Lightning 2.x writes it (keys from a real checkpoint, see fixtures)."""
    state = OrderedDict(("model." + k, v) for k, v in net.state_dict().items())
    state["loss_fn.pos_weight"] = torch.tensor([10.0])
    opt = torch.optim.Adam(net.parameters())
    return {
        "epoch": 2,
        "global_step": 30,
        "pytorch-lightning_version": "2.6.6",
        "state_dict": state,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 3}}}},
        "callbacks": {
            "ModelCheckpoint{'monitor': 'loss'}": {"best_model_score": torch.tensor(0.1)}
        },
        "optimizer_states": [opt.state_dict()],
        "lr_schedulers": [{"step_size": 1, "gamma": 0.1, "base_lrs": [0.01], "last_epoch": 3}],
        "hparams_name": "kwargs",
        "hyper_parameters": {"lr": 0.01, "width": 4},
    }


def test_lightning_shaped_checkpoint(tmp_path: Path) -> None:
    net = tiny(seed=7)
    torch.save(lightning_like(net), tmp_path / "last.ckpt")
    with pytest.raises(InputError, match="is a Lightning checkpoint: pass --model"):
        load_checkpoint(tmp_path / "last.ckpt")
    loaded = load_checkpoint(tmp_path / "last.ckpt", TINY)
    assert loaded.format == "lightning" and same_weights(net, loaded.model)
    assert loaded.unexpected_keys == ["loss_fn.pos_weight"] and loaded.missing_keys == []
    assert loaded.meta["global_step"] == 30
    assert loaded.meta["hyper_parameters"] == {"lr": 0.01, "width": 4}


@pytest.mark.parametrize("name", ["lightning_real.ckpt", "lightning_omegaconf.ckpt"])
def test_real_lightning_checkpoint_loads_without_trust(name: str) -> None:
    """Written by Lightning 2.6.6 (tests/fixtures/make_real_checkpoints.py)."""
    path = FIXTURES / name
    before = digest(path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # plain weights_only refuses these files
    unsafe = describe_unsafe_globals(path)
    assert unsafe  # and says which containers it needs
    loaded = load_checkpoint(path, TINY)
    assert loaded.format == "lightning" and loaded.missing_keys == []
    assert loaded.meta["global_step"] == 3 and loaded.meta["lightning_version"] == "2.6.6"
    hp = loaded.meta["hyper_parameters"]
    assert hp["lr"] == 0.01 and type(hp["lr"]) is float
    assert hp["data"] == "/data/sirst"
    assert list(hp["sizes"]) == [1, 2]
    assert loaded.raw is not None and "optimizer_states" in loaded.raw
    # both fixtures trained the same seeded model on the same data: same weights
    ref = torch.load(FIXTURES / "lightning_real.ckpt", weights_only=False)["state_dict"]
    assert same_weights({k[len("model.") :]: v for k, v in ref.items()}, loaded.model)
    assert digest(path) == before  # input files are never written


def test_real_lightning_numpy_array_hparam() -> None:
    loaded = load_checkpoint(FIXTURES / "lightning_real.ckpt", TINY)
    assert loaded.meta["hyper_parameters"]["arr"] == [0, 1, 2]
    assert loaded.meta["hyper_parameters"]["sizes"] == (1, 2)
    omega = load_checkpoint(FIXTURES / "lightning_omegaconf.ckpt", TINY)
    assert omega.meta["hyper_parameters"]["nested"] == {"a": 1}


@pytest.mark.slow
def test_lightning_written_now(tmp_path: Path) -> None:
    """Lightning (installed by the dev extras) writes a checkpoint that loads without trust."""
    import argparse
    import pathlib

    from make_real_checkpoints import lightning

    ns = argparse.Namespace(data=pathlib.Path("/x"), lr=np.float64(0.1), arr=np.arange(2))
    lightning(tmp_path / "now.ckpt", ns)
    loaded = load_checkpoint(tmp_path / "now.ckpt", TINY)
    assert loaded.format == "lightning" and loaded.meta["hyper_parameters"]["lr"] == 0.1


# ------------------------------------------------------------------ mmengine


def test_real_mmengine_checkpoint() -> None:
    """Written by mmengine 0.10.7 Runner (meta, message_hub with HistoryBuffer, optimizer)."""
    path = FIXTURES / "mmengine_real.pth"
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert "mmengine.logging.history_buffer.HistoryBuffer" in describe_unsafe_globals(path)
    loaded = load_checkpoint(path, TINY)
    assert loaded.format == "mmengine" and loaded.meta["iter"] == 3
    assert "key prefixes: stripped 'net.'" in loaded.notes
    assert loaded.raw is not None
    hist = loaded.raw["message_hub"]["log_scalars"]["train/loss"]
    assert len(hist["log_history"]) == 3 and all(isinstance(v, float) for v in hist["log_history"])
    ref = torch.load(path, weights_only=False, pickle_module=_StubbingPickle)["state_dict"]
    assert same_weights({k[len("net.") :]: v for k, v in ref.items()}, loaded.model)


class _StubbingPickle:
    """A pickle module for torch.load whose Unpickler stubs mmengine's classes (reference)."""

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if module.startswith("mmengine"):
                return type(name, (), {"__setstate__": lambda self, s: None, "min": 0,
                                       "max": 0, "mean": 0, "current": 0})  # fmt: skip
            return super().find_class(module, name)

    load = staticmethod(pickle.load)


def test_mmengine_shaped_ddp_checkpoint(tmp_path: Path) -> None:
    net = tiny(seed=8)
    obj = {
        "meta": {"epoch": 4, "iter": 400, "seed": 0, "cfg": "model = dict()"},
        "state_dict": OrderedDict(("module." + k, v) for k, v in net.state_dict().items()),
        "message_hub": {"log_scalars": {}, "runtime_info": {"eta": np.float64(1.5)}},
        "optimizer": {"state": {}, "param_groups": []},
    }
    torch.save(obj, tmp_path / "epoch_4.pth")
    loaded = load_checkpoint(tmp_path / "epoch_4.pth", TINY)
    assert loaded.format == "mmengine" and loaded.meta["epoch"] == 4
    assert same_weights(net, loaded.model)


# ------------------------------------------------------------------ TorchScript, safetensors


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript(tmp_path: Path) -> None:
    net = tiny(seed=9).eval()
    torch.jit.save(torch.jit.script(net), str(tmp_path / "m.pt"))
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.format == "torchscript" and loaded.factory is None
    x = torch.rand(1, 1, 8, 8)
    assert torch.allclose(loaded.model(x)["cls"], net(x)["cls"])
    assert describe_unsafe_globals(tmp_path / "m.pt") == []
    rehomed = load_checkpoint(tmp_path / "m.pt", TINY)  # weights into the user's model
    assert rehomed.factory == TINY and same_weights(net, rehomed.model)


ST_CODES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}  # fmt: skip


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    """A minimal independent writer of the safetensors layout (spec: huggingface/safetensors)."""
    header: dict[str, Any] = {"__metadata__": meta}
    blobs, offset = [], 0
    for name, t in tensors.items():
        raw = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": ST_CODES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}  # fmt: skip
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def test_safetensors_all_dtypes(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    tensors = {
        f"t.{code}": (torch.randn(2, 3, generator=g) * 50).to(dtype)
        for dtype, code in ST_CODES.items()
    }
    tensors["scalar"] = torch.tensor(3.5)
    tensors["empty"] = torch.zeros(0, 4)
    write_safetensors(tmp_path / "w.safetensors", tensors, {"k": "v"})
    got, meta = read_safetensors(tmp_path / "w.safetensors")
    assert meta == {"k": "v"} and got.keys() == tensors.keys()
    for k, t in tensors.items():
        assert got[k].dtype == t.dtype and got[k].shape == t.shape and torch.equal(got[k], t)


def test_safetensors_fixture_and_model(tmp_path: Path) -> None:
    """real.safetensors: safetensors.torch.save_file of TinyNet() under torch.manual_seed(1)."""
    loaded = load_checkpoint(FIXTURES / "real.safetensors", TINY)
    assert loaded.format == "safetensors"
    assert loaded.meta == {"safetensors": {"note": "fixture"}}
    assert same_weights(tiny(seed=1), loaded.model)
    with pytest.raises(InputError, match="is a safetensors file: pass --model"):
        load_checkpoint(FIXTURES / "real.safetensors")


def test_safetensors_against_package(tmp_path: Path) -> None:
    """Optional: compare with the real ``safetensors`` package when it is installed."""
    import safetensors.torch as st_torch

    tensors = {
        "a": torch.randn(3, 2).to(torch.bfloat16),
        "b": torch.arange(5),
        "c": torch.ones(1) > 0,
    }
    st_torch.save_file(tensors, str(tmp_path / "x.safetensors"), metadata={"m": "1"})
    got, meta = read_safetensors(tmp_path / "x.safetensors")
    assert meta == {"m": "1"} and all(torch.equal(got[k], tensors[k]) for k in tensors)
    write_safetensors(tmp_path / "y.safetensors", tensors, {})
    theirs = st_torch.load_file(str(tmp_path / "y.safetensors"))
    assert all(torch.equal(theirs[k], tensors[k]) for k in tensors)


def test_corrupt_safetensors(tmp_path: Path) -> None:
    data = (FIXTURES / "real.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-10])
    with pytest.raises(InputError, match=r"cut\.safetensors: truncated or corrupt safetensors"):
        load_checkpoint(tmp_path / "cut.safetensors", TINY)


# ------------------------------------------------------------------ refusing code


class Evil:
    """Unpickling this runs code that creates a file."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.target)!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("how", ["zip", "legacy", "raw-pickle-proto4"])
def test_malicious_pickle_refused_and_code_not_run(tmp_path: Path, how: str) -> None:
    target = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pt"
    obj = {"state_dict": tiny().state_dict(), "x": Evil(target)}
    if how == "zip":
        torch.save(obj, path)
    elif how == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(Evil(target), protocol=4))
    assert "builtins.exec" in describe_unsafe_globals(path)
    with pytest.raises(InputError) as info:
        load_checkpoint(path, TINY)
    msg = str(info.value)
    assert msg.startswith(f"{path}: refusing to unpickle") and "\n" not in msg
    assert "builtins.exec" in msg and "--trust-checkpoint" in msg
    assert not target.exists()  # the code did not run
    if how == "zip":  # with --trust-checkpoint it loads, and the file's code runs
        loaded = load_checkpoint(path, TINY, trust=True)
        assert target.read_text() == "pwned"
        assert loaded.format == "state_dict"
        assert any("--trust-checkpoint" in n for n in loaded.notes)


def test_pickled_whole_model_refused_naming_classes(tmp_path: Path) -> None:
    net = tiny(seed=10)
    torch.save(net, tmp_path / "whole.pt")
    with pytest.raises(InputError) as info:
        load_checkpoint(tmp_path / "whole.pt")
    msg = str(info.value)
    assert "would import ckpt_usermodels.TinyNet" in msg  # the user's class first
    assert "torch.nn.modules.conv.Conv2d" in msg and "--trust-checkpoint" in msg
    loaded = load_checkpoint(tmp_path / "whole.pt", trust=True)
    assert loaded.format == "pickled-model" and same_weights(net, loaded.model)
    # ultralytics-style: a dict holding the pickled module
    torch.save({"epoch": 1, "model": net}, tmp_path / "yolo.pt")
    with pytest.raises(InputError, match=r"ckpt_usermodels\.TinyNet"):
        load_checkpoint(tmp_path / "yolo.pt", TINY)
    rehomed = load_checkpoint(tmp_path / "yolo.pt", TINY, trust=True)
    assert rehomed.format == "pickled-model" and same_weights(net, rehomed.model)


def test_getattr_only_on_stubs(tmp_path: Path) -> None:
    """builtins.getattr is allowed for mmengine's stubs only, never on real objects."""

    class Sneaky:
        def __reduce__(self) -> tuple[Any, ...]:
            return (getattr, (np.ndarray, "tofile"))

    path = tmp_path / "g.pt"
    torch.save({"state_dict": tiny().state_dict(), "f": Sneaky()}, path)
    with pytest.raises(InputError, match="refusing to unpickle"):
        load_checkpoint(path, TINY)


# ------------------------------------------------------------------ damaged and mismatched


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_file(tmp_path: Path, legacy: bool) -> None:
    path = tmp_path / "full.pt"
    torch.save(tiny().state_dict(), path, _use_new_zipfile_serialization=not legacy)
    data = path.read_bytes()
    for cut in (len(data) // 2, 40):
        bad = tmp_path / f"cut{cut}.pt"
        bad.write_bytes(data[:cut])
        with pytest.raises(InputError) as info:
            load_checkpoint(bad, TINY)
        msg = str(info.value)
        assert msg.startswith(f"{bad}: ") and "\n" not in msg
        assert "corrupt" in msg or "not a checkpoint" in msg


@pytest.mark.parametrize(
    ("content", "expect"),
    [(b"", "empty file"), (b"hello world, not weights", "not a checkpoint"),
     (b"PK\x03\x04garbage", "truncated or corrupt")],
)  # fmt: skip
def test_not_a_checkpoint(tmp_path: Path, content: bytes, expect: str) -> None:
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(InputError, match=expect):
        load_checkpoint(path, TINY)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(InputError, match="is a directory"):
        load_checkpoint(tmp_path)


def test_shape_mismatch_names_key_and_shapes(tmp_path: Path) -> None:
    torch.save(tiny(4).state_dict(), tmp_path / "w4.pt")
    with pytest.raises(InputError) as info:
        load_checkpoint(tmp_path / "w4.pt", TINY, {"width": "8"})
    msg = str(info.value)
    assert msg.startswith(f"{tmp_path / 'w4.pt'}: checkpoint does not fit the model")
    assert "stem.weight has shape [4, 1, 3, 3] in the checkpoint, [8, 1, 3, 3] in the model" in msg


def test_another_architecture_entirely(tmp_path: Path) -> None:
    torch.save({"backbone.layer1.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match=r"no weight of the model .* is in the checkpoint"):
        load_checkpoint(tmp_path / "other.pt", TINY)


def test_missing_head_is_an_error_other_missing_keys_reported(tmp_path: Path) -> None:
    state = tiny().state_dict()
    torch.save({k: v for k, v in state.items() if not k.startswith("cls.")}, tmp_path / "a.pt")
    with pytest.raises(
        InputError, match=r"a\.pt: the checkpoint has no classification head.*cls\.weight"
    ):
        load_checkpoint(tmp_path / "a.pt", TINY)
    torch.save({k: v for k, v in state.items() if not k.startswith("reg.")}, tmp_path / "b.pt")
    loaded = load_checkpoint(tmp_path / "b.pt", TINY)
    assert loaded.missing_keys == ["reg.weight", "reg.bias"]


def test_head_is_last_conv_when_no_name_says_so(tmp_path: Path) -> None:
    from ckpt_usermodels import plain

    net = plain()
    assert head_keys(net) == {"b.weight", "b.bias"}
    torch.save({"a.weight": net.a.weight, "a.bias": net.a.bias}, tmp_path / "nob.pt")
    with pytest.raises(InputError, match="no classification head"):
        load_checkpoint(tmp_path / "nob.pt", "ckpt_usermodels:plain")
    torch.save({"b.weight": net.b.weight, "b.bias": net.b.bias}, tmp_path / "noa.pt")
    loaded = load_checkpoint(tmp_path / "noa.pt", "ckpt_usermodels:plain")
    assert loaded.missing_keys == ["a.weight", "a.bias"]


def test_inputs_are_never_written() -> None:
    for name in ("lightning_real.ckpt", "mmengine_real.pth", "real.safetensors"):
        path = FIXTURES / name
        before = digest(path)
        load_checkpoint(path, TINY)
        describe_unsafe_globals(path)
        assert digest(path) == before
