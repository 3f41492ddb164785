"""Multiscale fusion of the MDEQ layer f: every branch receives every other.

For target branch i, ``u_i = b_i + sum_{j>i} Up_{j->i}(b_j) +
sum_{j<i} Down_{j->i}(b_j)`` and ``out_i = GN_{G/2}(conv1x1(ReLU(u_i)))``.
The builders return plain ``nn.ModuleList`` objects so that the owning module
(:class:`MDEQModule`) exposes them as ``fuse_layers`` and ``post_fuse_layers``,
the names used by the authors' checkpoints.
"""
from collections import OrderedDict
from typing import Sequence, Tuple

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .weight_norm_conv import make_conv

Size2d = Tuple[int, int]


class FusionUpsample(nn.Module):
    """From a coarser branch: conv1x1 -> GN -> nearest resize.

    The resize goes to the target branch's exact size rather than by a scale
    factor, so branch sizes that were rounded up when halving still match.
    For exact powers of two both give the same result.

    Args:
        in_channels (int): Channels of the source branch.
        out_channels (int): Channels of the target branch.
        num_groups (int): GroupNorm groups.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 num_groups: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            OrderedDict([
                ('conv', make_conv(in_channels, out_channels, 1)),
                ('gnorm', nn.GroupNorm(num_groups, out_channels)),
            ]))

    def forward(self, x: Tensor, out_size: Size2d) -> Tensor:
        return F.interpolate(self.net(x), size=out_size, mode='nearest')


class FusionDownsample(nn.Module):
    """From a finer branch: ``num_steps`` stride-2 conv3x3 -> GN stages.

    All but the last stage keep the source channels and end with a ReLU; the
    last one maps to the target channels. ``net[k]`` holds stage k.

    Args:
        in_channels (int): Channels of the source branch.
        out_channels (int): Channels of the target branch.
        num_steps (int): Number of halvings (target index - source index).
        num_groups (int): GroupNorm groups.
    """

    def __init__(self, in_channels: int, out_channels: int, num_steps: int,
                 num_groups: int) -> None:
        super().__init__()
        stages = []
        for k in range(num_steps):
            last = k == num_steps - 1
            stage_out = out_channels if last else in_channels
            layers = [
                ('conv', make_conv(in_channels, stage_out, 3, stride=2)),
                ('gnorm', nn.GroupNorm(num_groups, stage_out)),
            ]
            if not last:
                layers.append(('relu', nn.ReLU()))
            stages.append(nn.Sequential(OrderedDict(layers)))
        self.net = nn.Sequential(*stages)

    def forward(self, x: Tensor, out_size: Size2d) -> Tensor:
        y = self.net(x)
        if tuple(y.shape[-2:]) != tuple(out_size):
            raise ValueError(
                f'a branch of size {tuple(x.shape[-2:])} downsamples to '
                f'{tuple(y.shape[-2:])}, but the target branch has size '
                f'{tuple(out_size)}; each branch must be half the size of '
                f'the previous one, rounded up')
        return y


def build_fuse_layers(num_channels: Sequence[int],
                      num_groups: int) -> nn.ModuleList:
    """``fuse_layers[i][j]`` maps branch j to branch i (Identity if i == j)."""
    n = len(num_channels)
    fuse_layers = nn.ModuleList()
    for i in range(n):
        row = nn.ModuleList()
        for j in range(n):
            if j == i:
                row.append(nn.Identity())
            elif j > i:
                row.append(
                    FusionUpsample(num_channels[j], num_channels[i],
                                   num_groups))
            else:
                row.append(
                    FusionDownsample(num_channels[j], num_channels[i], i - j,
                                     num_groups))
        fuse_layers.append(row)
    return fuse_layers


def build_post_fuse_layers(num_channels: Sequence[int],
                           num_groups: int,
                           weight_norm: bool = True,
                           affine: bool = True) -> nn.ModuleList:
    """Per branch ReLU -> conv1x1 -> GroupNorm with ``num_groups // 2``.

    ``affine=False`` matches configurations (e.g. the authors' CIFAR models)
    whose last GroupNorm has no learnable scale and shift.
    """
    return nn.ModuleList([
        nn.Sequential(
            OrderedDict([
                ('relu', nn.ReLU()),
                ('conv', make_conv(c, c, 1, weight_norm=weight_norm)),
                ('gnorm', nn.GroupNorm(num_groups // 2, c, affine=affine)),
            ])) for c in num_channels
    ])


def fuse_branches(feats: Sequence[Tensor], fuse_layers: nn.ModuleList,
                  post_fuse_layers: nn.ModuleList) -> Tuple[Tensor, ...]:
    """Exchange information between all branches, then post-process each."""
    outs = []
    for i, target in enumerate(feats):
        out_size = tuple(target.shape[-2:])
        fused = target
        for j, source in enumerate(feats):
            if j != i:
                fused = fused + fuse_layers[i][j](source, out_size)
        outs.append(post_fuse_layers[i](fused))
    return tuple(outs)
