"""Optimizer parameter groups and learning-rate schedules."""

import math

import pytest
import torch
from torch import nn

from segzoo.config import load_config
from segzoo.errors import ConfigError
from segzoo.optim.optimizers import adamw, param_groups, sgd
from segzoo.optim.schedulers import constant, cosine, multistep, poly

# the schedule tests step schedulers without optimizer steps
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.head = nn.Sequential(nn.Conv2d(4, 2, 1), nn.GroupNorm(1, 2))
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def test_param_groups_split_backbone_norm_bias():
    net = Net()
    groups = {g["name"]: g for g in param_groups(net, lr=0.1, weight_decay=1e-4, backbone_lr_mult=0.1)}
    assert set(groups) == {"backbone.decay", "backbone.bias", "backbone.norm", "head.decay", "head.bias",
                           "head.norm"}
    assert groups["backbone.decay"]["params"] == [net.backbone[0].weight]
    assert groups["backbone.norm"]["params"] == [net.backbone[1].weight, net.backbone[1].bias]
    assert groups["head.bias"]["params"] == [net.head[0].bias]
    assert math.isclose(groups["backbone.decay"]["lr"], 0.01) and groups["head.decay"]["lr"] == 0.1
    assert groups["backbone.decay"]["weight_decay"] == 1e-4
    assert groups["head.norm"]["weight_decay"] == 0.0 and groups["head.bias"]["weight_decay"] == 0.0
    n_trainable = sum(1 for p in net.parameters() if p.requires_grad)
    assert sum(len(g["params"]) for g in groups.values()) == n_trainable  # frozen ones left out
    same = param_groups(net, lr=0.1, weight_decay=1e-4, norm_weight_decay=None, bias_weight_decay=None)
    assert all(g["weight_decay"] == 1e-4 for g in same)


def test_no_decay_groups_really_get_no_decay():
    net = Net()
    opt = sgd(net, lr=0.1, momentum=0.0, weight_decay=0.5)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    bn_w, conv_w = net.backbone[1].weight.detach().clone(), net.backbone[0].weight.detach().clone()
    opt.step()
    assert torch.equal(net.backbone[1].weight, bn_w)  # zero grad, no decay: unchanged
    assert torch.allclose(net.backbone[0].weight, conv_w * (1 - 0.1 * 0.5))
    assert isinstance(adamw(net, lr=1e-3, betas=[0.9, 0.99]), torch.optim.AdamW)


def lrs(sched, n):  # reads lr, steps the schedule (no optimizer step needed)
    out = []
    for _ in range(n):
        out.append(sched.optimizer.param_groups[0]["lr"])
        sched.step()
    return out


def opt(lr=1.0):
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)


def test_schedules_with_warmup():
    p = lrs(poly(opt(), 10, power=1.0, warmup_iters=0), 11)
    assert [round(x, 6) for x in p] == [round(1 - i / 10, 6) for i in range(11)]
    w = lrs(constant(opt(), 10, warmup_iters=4, warmup_ratio=0.2), 6)
    assert [round(x, 6) for x in w] == [0.2, 0.4, 0.6, 0.8, 1.0, 1.0]
    c = lrs(cosine(opt(), 8, min_lr=0.1), 9)
    assert math.isclose(c[0], 1.0) and math.isclose(c[4], 0.55) and math.isclose(c[8], 0.1)
    m = lrs(multistep(opt(), 10, milestones=[3, 6], gamma=0.5, warmup_iters=2, warmup_ratio=0.5), 8)
    assert [round(x, 6) for x in m] == [0.5, 0.75, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
    with pytest.raises(ValueError, match="milestones"):
        multistep(opt(), 10, milestones=[6, 3])


def test_group_lr_mult_is_kept_by_the_schedule():
    net = Net()
    o = sgd(net, lr=0.1, backbone_lr_mult=0.1)
    s = poly(o, 4, power=1.0, min_lr=0.01)
    s.step()
    s.step()
    lr = {g["name"]: g["lr"] for g in o.param_groups}
    assert math.isclose(lr["head.decay"], 0.055) and math.isclose(lr["backbone.decay"], 0.0055)


def test_optimizer_and_scheduler_keys_are_validated(tiny_config):
    cfg = load_config(tiny_config, ["optimizer={_delete_: true, name: adamw, lr: 0.001, betas: [0.9, 0.95], "
                                    "backbone_lr_mult: 0.1, norm_weight_decay: null}",
                                    "scheduler={_delete_: true, name: cosine, warmup_iters: 5}"])
    assert cfg.optimizer.kwargs["betas"] == [0.9, 0.95]
    with pytest.raises(ConfigError, match="optimizer.backbone_lr"):
        load_config(tiny_config, ["optimizer.backbone_lr=0.1"])
    with pytest.raises(ConfigError, match="needs key 'milestones'"):
        load_config(tiny_config, ["scheduler={_delete_: true, name: multistep}"])
