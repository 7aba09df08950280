"""Dead units (issue 16): the activation probe against a plain per-channel reference, on a
network whose neck was killed by zeroing its weights and on a healthy one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from convdiag.analyses.activations import ActivationProbe


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.neck = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.cls_head = nn.Conv2d(16, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls_head(self.neck(torch.relu(self.stem(x))))


def _run(net: nn.Module, batches: list[torch.Tensor]) -> dict:
    net.eval()
    probe = ActivationProbe(net)
    with torch.no_grad():
        for x in batches:
            net(x)
    probe.close()
    return probe.compute()


def test_dead_neck_is_measured_and_healthy_net_is_alive() -> None:
    torch.manual_seed(0)
    batches = [torch.rand(2, 1, 16, 16) for _ in range(3)]
    healthy = Net()
    res = _run(healthy, batches)
    # the head's input (a pre-hook on cls_head) is the neck's ReLU output
    assert res["feeding_layer"] == "cls_head:input" and res["feeding_dead_share"] < 0.2
    dead = Net()
    with torch.no_grad():
        dead.neck[0].weight.zero_()
        dead.neck[0].bias.fill_(-1.0)  # every neck output negative -> ReLU gives exactly 0
    res = _run(dead, batches)
    assert res["feeding_dead_share"] == 1.0 and res["worst_layer"] == "neck.0"
    # reference: per channel, the neck's ReLU output over all batches is constant
    outs = torch.cat([dead.neck(torch.relu(dead.stem(x))) for x in batches]).detach()
    flat = outs.transpose(0, 1).reshape(16, -1).numpy()
    assert int(np.sum(flat.max(1) == flat.min(1))) == res["layers"]["neck.2"]["dead"] == 16


def test_batches_split_differently_give_the_same_ranges() -> None:
    torch.manual_seed(1)
    net = Net().eval()  # analyses run in eval mode: BatchNorm uses its running statistics
    x = torch.rand(6, 1, 16, 16)
    one = ActivationProbe(net)
    with torch.no_grad():
        net(x)
    one.close()
    a, b = ActivationProbe(net), ActivationProbe(net)
    with torch.no_grad():
        for k in range(3):
            net(x[k : k + 1])
    a.close()
    with torch.no_grad():
        net(x[3:])
    b.close()
    a.merge(b.state())  # a saw images 0-2 one by one, b images 3-5: merged, all six
    for key, v in one.state().items():  # float32 convolutions differ by batch size ~1e-7
        np.testing.assert_allclose(a.state()[key], v, rtol=0, atol=1e-5)


def test_batchnorm_running_variance_spread() -> None:
    net = Net()
    with torch.no_grad():
        net.neck[1].running_var.fill_(1e8)
    res = _run(net, [torch.rand(1, 1, 8, 8)])
    assert res["bn_layers"] == 1 and res["bn_var_max"] == 1e8 and res["bn_var_median"] == 1e8


# --------------------------------------------------------------------------- head detection


class Anonymous(nn.Module):
    """No module name marks a head: the 1x1 convolutions to <= 4 channels are the heads."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 8, 3, padding=1)
        self.b = nn.ReLU()
        self.c = nn.Conv2d(8, 1, 1)
        self.d = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.b(self.a(x))
        return self.c(f), self.d(f)


def test_heads_of_user_models_and_the_fallbacks() -> None:
    from user_models import TinyUserNet

    from convdiag.models.detector import reference

    x = torch.rand(2, 1, 32, 32)
    for net, feeding in (
        (reference(head="P2", width=4), "heads.P2.cls:input, heads.P2.reg:input"),
        (TinyUserNet(), "heatmap:input, offset:input"),
        (Anonymous(), "c:input, d:input"),
        (nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU()), "1"),  # no head at all: last layer
    ):
        res = _run(net, [x])
        assert res["feeding_layer"] == feeding, type(net).__name__
        assert res["feeding_dead_share"] is not None and res["layers_probed"] >= 2


def test_dead_head_input_of_the_reference_detector() -> None:
    """Zeroed convolutions before the P2 head: every channel of its input is constant."""
    from convdiag.models.detector import reference

    torch.manual_seed(0)
    net = reference(head="P2", width=4)
    x = [torch.rand(2, 1, 32, 32), torch.rand(1, 1, 32, 64)]
    assert _run(net, x)["feeding_dead_share"] < 0.5
    with torch.no_grad():
        net.stem[1][0].weight.zero_()
        assert net.lat2 is not None
        net.lat2.weight.zero_()
    res = _run(net, x)
    assert res["feeding_dead_share"] == 1.0 and res["feeding_channels"] == 8
    # reference: the head input p2 itself, per channel over both batches
    feats = []
    hook = net.heads["P2"].cls.register_forward_pre_hook(lambda m, i: feats.append(i[0]))
    with torch.no_grad():
        for b in x:
            net(b)
    hook.remove()
    flat = torch.cat([f.detach().transpose(0, 1).reshape(4, -1) for f in feats], 1).numpy()
    assert np.all(flat.max(1) == flat.min(1))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_probe_of_a_torchscript_model_measures_nothing() -> None:
    net = torch.jit.script(Net())
    res = _run(net, [torch.rand(1, 1, 8, 8)])  # type: ignore[arg-type]
    assert res["layers_probed"] == 0 and res["dead_share"] is None


# --------------------------------------------------------------------------- per level


def _step(logits: torch.Tensor, valid: torch.Tensor, reg: torch.Tensor | None) -> object:
    from types import SimpleNamespace

    return SimpleNamespace(
        logits=logits, valid=valid, reg=reg, sizes=[(0, 0)] * int(logits.shape[0])
    )


def test_image_range_against_numpy_and_merge() -> None:
    from convdiag.analyses import AnalysisContext
    from convdiag.analyses.activations import ActivationAnalysis
    from convdiag.load.recipe import Recipe

    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 1, 4, 6))
    r = rng.uniform(size=(5, 2, 4, 6))
    valid = np.ones((5, 1, 4, 6), bool)
    valid[3, :, 2:, :] = False  # image 3 is smaller
    ctx = AnalysisContext(level="P2", stride=4, recipe=Recipe(), max_grid=(4, 6))
    t = torch.from_numpy
    whole = ActivationAnalysis(ctx)
    whole.update(_step(t(z), t(valid), t(r)))  # type: ignore[arg-type]
    a, b = ActivationAnalysis(ctx), ActivationAnalysis(ctx)
    a.update(_step(t(z[:2]), t(valid[:2]), t(r[:2])))  # type: ignore[arg-type]
    b.update(_step(t(z[2:]), t(valid[2:]), t(r[2:])))  # type: ignore[arg-type]
    a.merge(b.state())
    zm = np.where(valid, z, np.nan)[:, 0]
    want = float(np.nanmax(np.nanmax(zm, 0) - np.nanmin(zm, 0)))
    rm = np.where(valid, r, np.nan)
    want_reg = float(np.nanmax(np.nanmax(rm, 0) - np.nanmin(rm, 0)))
    for an in (whole, a):
        res = an.compute()
        assert res["images"] == 5 and res["cls_image_range"] == pytest.approx(want)
        assert res["reg_image_range"] == pytest.approx(want_reg)
        amax = float(np.nanmax(np.abs(zm)))
        assert res["cls_image_range_rel"] == pytest.approx(want / max(1.0, amax))
    # the same map for every image: no variation across images, whatever the spatial one
    same = ActivationAnalysis(ctx)
    same.update(_step(t(np.repeat(z[:1], 5, 0)), t(valid), None))  # type: ignore[arg-type]
    res = same.compute()
    assert res["cls_image_range"] == 0.0 and res["reg_image_range"] is None
    one = ActivationAnalysis(ctx)
    one.update(_step(t(z[:1]), t(valid[:1]), None))  # type: ignore[arg-type]
    assert one.compute()["cls_image_range"] is None  # one image: not judged


def test_the_pass_feeds_the_probe_with_fixed_memory_and_removes_its_hooks() -> None:
    """Inside ``run_analyses``: the state's arrays keep their shapes however many images
    pass, the hooks are gone afterwards, and the ranges equal a probe run by hand."""
    from analyze_models import make_dataset

    from convdiag.analyses import AnalysisContext
    from convdiag.analyses.run import run_analyses
    from convdiag.load.batching import make_batch
    from convdiag.load.recipe import Recipe
    from convdiag.load.runner import ModelRunner
    from convdiag.models.detector import reference

    torch.manual_seed(0)
    net = reference(head="P2", width=4)
    runner = ModelRunner(net, pad_to=32)
    ds = make_dataset(n=6, sizes=((64, 96),), seed=3)

    def ctx() -> AnalysisContext:
        return AnalysisContext(level="P2", stride=4, recipe=Recipe(), max_grid=(16, 24))

    few = run_analyses(runner, ds.subset([0, 1]), {"P2": ctx()}, batch_size=2)
    many = run_analyses(runner, ds, {"P2": ctx()}, batch_size=2)
    s_few, s_many = few["P2"]["activations"].state(), many["P2"]["activations"].state()
    assert {k: v.shape for k, v in s_few.items()} == {k: v.shape for k, v in s_many.items()}
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
    res = many["P2"]["activations"].compute()
    assert res["images"] == 6 and res["feeding_layer"].startswith("heads.P2.cls:input")
    by_hand = ActivationProbe(net.eval())  # the pass runs in eval mode
    with torch.no_grad():
        for i in range(0, 6, 2):
            net(make_batch(ds, [i, i + 1], 32).images)
    by_hand.close()
    for key, v in by_hand.state().items():
        np.testing.assert_allclose(s_many[f"probe/{key}"], v, rtol=1e-5, atol=1e-6)
