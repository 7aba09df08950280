"""The reference detector: shapes, bias init, head parameters, determinism, learnability."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from convdiag.errors import InputError
from convdiag.load.outputs import normalize_outputs
from convdiag.models import reference as factory_entry
from convdiag.models.detector import HEADS, ReferenceDetector, reference
from convdiag.targets import losses

STEPS = 60  # enough on an easy set; plain ReLU hidden units fail this at any count
LEVELS = {"P2": ["P2"], "P3": ["P3"], "P4": ["P4"], "fused": ["P4", "P2"]}
STRIDE = {"P2": 4, "P3": 8, "P4": 16}


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("size", [(64, 96), (50, 70)])
def test_output_shapes(head: str, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    m = reference(head=head).eval()
    x = torch.rand(2, 1, *size)
    with torch.no_grad():
        out = m(x)
    assert list(out) == LEVELS[head]
    for level, o in out.items():
        s = STRIDE[level]
        grid = (math.ceil(size[0] / s), math.ceil(size[1] / s))
        assert o["cls"].shape == (2, 1, *grid)
        assert o["reg"].shape == (2, 2, *grid)
        assert o["cls"].is_contiguous() and o["reg"].is_contiguous()
        assert ((o["reg"] > 0) & (o["reg"] < 1)).all()
    norm = normalize_outputs(out, size)
    assert sorted(norm) == sorted(LEVELS[head])


def test_parameter_count_and_config() -> None:
    m = reference(head="P2", width=16)
    n = sum(p.numel() for p in m.parameters())
    assert 40_000 <= n <= 60_000
    assert m.config == {
        "head": "P2",
        "width": 16,
        "in_channels": 1,
        "prior": 0.01,
        "bias_init": "prior",
    }
    rebuilt = reference(**m.config)
    rebuilt.load_state_dict(m.state_dict())
    assert factory_entry(head="fused").config["head"] == "fused"
    assert sum(p.numel() for p in reference(width=8).parameters()) < n


@pytest.mark.parametrize("head", HEADS)
def test_bias_init(head: str) -> None:
    torch.manual_seed(0)
    prior = 0.002
    x = torch.rand(2, 1, 64, 64)
    m = reference(head=head, prior=prior, bias_init="prior").eval()
    out = m(x)
    finest = "P2" if head == "fused" else head
    # The head's last layer is small: every logit starts close to the prior's logit.
    logits = out[finest]["cls"]
    assert logits.mean().item() == pytest.approx(math.log(prior / (1 - prior)), abs=0.1)
    biases = m.cls_bias_parameters()
    assert len(biases) == len(LEVELS[head]) == len(m.cls_bias_names())
    named = dict(m.named_parameters())
    assert all(named[n] is b for n, b in zip(m.cls_bias_names(), biases, strict=True))
    if head == "fused":
        coarse = math.log(16 * prior / (1 - 16 * prior))
        assert biases[0].item() == pytest.approx(coarse, rel=1e-5)
        assert biases[1].item() == pytest.approx(math.log(prior / (1 - prior)) - coarse, rel=1e-5)
    else:
        assert biases[0].item() == pytest.approx(math.log(prior / (1 - prior)), rel=1e-5)
    zero = reference(head=head, bias_init="zero").eval()
    assert all(b.item() == 0.0 for b in zero.cls_bias_parameters())
    assert zero(x)[finest]["cls"].abs().mean().item() < 0.1


def test_head_parameters_split_gradients() -> None:
    torch.manual_seed(0)
    m = reference(head="fused")
    groups = m.head_parameters()
    names = m.head_parameter_names()
    named = dict(m.named_parameters())
    for kind in ("cls", "reg"):
        # the group is exactly the parameters of the heads' ``kind`` branches, by name
        expect = {n for n in named if n.startswith("heads.") and n.split(".")[2] == kind}
        assert {id(p) for p in groups[kind]} == {id(named[n]) for n in expect}
        assert len(groups[kind]) == 8  # two heads x (conv3x3, conv1x1) x (weight, bias)
    assert not {id(p) for p in groups["cls"]} & {id(p) for p in groups["reg"]}
    out = m(torch.rand(2, 1, 64, 64))
    # A loss on the P2 classification reaches the P4 classification branch (coarse-to-fine)
    # and no offset branch.
    out["P2"]["cls"].sum().backward()
    assert all(p.grad is None or (p.grad == 0).all() for p in groups["reg"])
    p4_cls = [named[n] for n in names["cls"] if n.startswith("heads.P4.")]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in p4_cls)


def test_deterministic() -> None:
    x = torch.rand(2, 1, 64, 64)
    grads = []
    for _ in range(2):
        torch.manual_seed(3)
        m = reference(head="P2")
        out = m(x)["P2"]
        (out["cls"].sum() + out["reg"].sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    assert torch.equal(grads[0], grads[1])


def test_eval_batch_invariance() -> None:
    torch.manual_seed(0)
    m = reference(head="P2").eval()
    x = torch.rand(4, 1, 64, 64)
    with torch.no_grad():
        whole = m(x)["P2"]["cls"]
        single = torch.cat([m(x[i : i + 1])["P2"]["cls"] for i in range(4)])
    torch.testing.assert_close(whole, single, rtol=1e-5, atol=1e-5)


def test_bad_arguments() -> None:
    with pytest.raises(InputError, match="--head"):
        reference(head="P7")
    with pytest.raises(InputError, match="--bias-init"):
        reference(bias_init="random")
    with pytest.raises(InputError, match="prior"):
        reference(prior=0.0)
    with pytest.raises(InputError, match="width"):
        reference(width=3)
    assert reference(head="p3").config["head"] == "P3"
    assert reference(head="FUSED").config["head"] == "fused"
    with pytest.raises(InputError, match="expected"):
        reference(in_channels=3)(torch.rand(1, 1, 32, 32))
    assert isinstance(reference(in_channels=3), ReferenceDetector)


def _blob_batch(rng: np.random.Generator, n: int, size: int = 64):
    """Images with one bright Gaussian blob each, hard P2 labels."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    imgs = rng.normal(0.3, 0.02, (n, 1, size, size))
    target = np.zeros((n, 1, size // 4, size // 4))
    for b in range(n):
        x, y = rng.uniform(6, size - 6, 2)
        imgs[b, 0] += 0.3 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 2.0)
        target[b, 0, int(y // 4), int(x // 4)] = 1.0
    return torch.tensor(imgs, dtype=torch.float32), torch.tensor(target, dtype=torch.float32)


def test_zero_bias_focal_logits_can_cross_zero() -> None:
    # Regression: with plain ReLU hidden units and a zero bias, target logits got stuck just
    # below 0 (scores < 0.5) under focal loss. The detector must get past it on an easy set.
    torch.manual_seed(0)
    x, y = _blob_batch(np.random.default_rng(0), 8)
    m = reference(head="P2", bias_init="zero")
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    for _ in range(STEPS):
        loss = losses.centernet_focal_loss(m(x)["P2"]["cls"], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    logits = m(x)["P2"]["cls"].detach()
    assert logits[y == 1].min() > 0.0
    assert logits[y == 0].max() < logits[y == 1].min()
