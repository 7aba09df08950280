"""Dead units (issue 16): the activation probe against a plain per-channel reference, on a
network whose neck was killed by zeroing its weights and on a healthy one."""

from __future__ import annotations

import numpy as np
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
    assert res["feeding_layer"] == "neck.2" and res["feeding_dead_share"] < 0.2
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
