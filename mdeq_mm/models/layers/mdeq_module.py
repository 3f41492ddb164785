"""The MDEQ layer f_theta(z; x): per-branch residual blocks + fusion."""
from typing import List, Optional, Sequence, Tuple, Union

import torch.nn as nn
from mmengine.model import BaseModule
from torch import Tensor

from .fusion import build_fuse_layers, build_post_fuse_layers, fuse_branches
from .residual_block import MDEQBasicBlock
from .weight_norm_conv import release_weight_norm, reset_weight_norm


class MDEQBranch(nn.Module):
    """One resolution stream of f: its residual block(s).

    A container so that state-dict keys read ``branches.i.blocks.0.*`` as in
    the authors' checkpoints; every configuration uses one block per branch.
    """

    def __init__(self, block: MDEQBasicBlock) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([block])

    def reset(self, ref: Tensor) -> None:
        """Prepare the block(s) for one model forward (see block ``reset``)."""
        for block in self.blocks:
            block.reset(ref)

    def forward(self, z: Tensor, injection: Optional[Tensor]) -> Tensor:
        return self.blocks[0](z, injection)


class MDEQModule(BaseModule):
    """The weight-tied layer f_theta whose fixed point an MDEQ solves for.

    Branch i holds features with ``num_channels[i]`` channels at half the
    size of branch i-1 (rounded up). Each branch runs an
    :class:`MDEQBasicBlock` (with the input injection added inside), then all
    branches are fused (see :mod:`.fusion`). Only GroupNorm is used: batch
    statistics would change at every solver step.

    Call :meth:`reset` once per model forward, before the solver, so that
    weight normalization is computed once and one dropout mask is shared by
    all solver steps.

    State-dict layout (authors' names)::

        branches.{i}.blocks.0.{conv1,conv2}.{weight_g,weight_v}
        branches.{i}.blocks.0.{gn1,gn2,gn3}.{weight,bias}
        fuse_layers.{i}.{j}.net.{conv,gnorm}.*            (j > i, upsample)
        fuse_layers.{i}.{j}.net.{k}.{conv,gnorm}.*        (j < i, stage k)
        post_fuse_layers.{i}.conv.{weight_g,weight_v}
        post_fuse_layers.{i}.gnorm.{weight,bias}

    (``weight_g/weight_v`` become ``weight`` when ``weight_norm=False``.)

    Args:
        num_channels (Sequence[int]): Channels of each branch, finest first.
            Each must be divisible by ``num_groups``.
        expansion (int): Hidden width factor of the residual blocks.
            Defaults to 5.
        num_groups (int): GroupNorm groups; must be even because the
            post-fusion norm uses ``num_groups // 2``. Defaults to 8.
        dropout (float): Variational dropout rate in the blocks.
            Defaults to 0.
        weight_norm (bool): Weight-normalize the block convs and the
            post-fusion conv1x1. Defaults to True.
        post_gn_affine (bool): Learnable affine parameters in the post-fusion
            GroupNorm. Defaults to True.
        init_cfg (dict | list[dict], optional): Initialization config.
            Defaults to None.

    Example:
        >>> import torch
        >>> f = MDEQModule((8, 16), expansion=2, num_groups=4)
        >>> z = (torch.zeros(1, 8, 16, 16), torch.zeros(1, 16, 8, 8))
        >>> x = (torch.rand(1, 8, 16, 16), None)
        >>> f.reset(z)
        >>> [tuple(out.shape) for out in f(z, x)]
        [(1, 8, 16, 16), (1, 16, 8, 8)]
    """

    def __init__(self,
                 num_channels: Sequence[int],
                 expansion: int = 5,
                 num_groups: int = 8,
                 dropout: float = 0.0,
                 weight_norm: bool = True,
                 post_gn_affine: bool = True,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg)
        self._check_args(num_channels, expansion, num_groups)
        self.num_channels = tuple(num_channels)
        self.num_branches = len(self.num_channels)
        self.branches = nn.ModuleList([
            MDEQBranch(
                MDEQBasicBlock(
                    c,
                    expansion=expansion,
                    num_groups=num_groups,
                    dropout=dropout,
                    weight_norm=weight_norm)) for c in self.num_channels
        ])
        self.fuse_layers = build_fuse_layers(self.num_channels, num_groups)
        self.post_fuse_layers = build_post_fuse_layers(
            self.num_channels,
            num_groups,
            weight_norm=weight_norm,
            affine=post_gn_affine)

    @staticmethod
    def _check_args(num_channels: Sequence[int], expansion: int,
                    num_groups: int) -> None:
        """Reject configurations that GroupNorm or the fusion cannot use."""
        if len(num_channels) < 1:
            raise ValueError(
                f'num_channels must list at least one branch, got '
                f'{num_channels!r}')
        if num_groups < 2 or num_groups % 2:
            raise ValueError(
                f'num_groups must be a positive even number (the post-fusion '
                f'GroupNorm uses num_groups // 2), got {num_groups}')
        for i, channels in enumerate(num_channels):
            if channels < 1 or channels % num_groups:
                raise ValueError(
                    f'num_channels[{i}]={channels} must be a positive '
                    f'multiple of num_groups={num_groups}')
        if expansion < 1:
            raise ValueError(f'expansion must be >= 1, got {expansion}')

    def _check_inputs(self, name: str, values: Sequence) -> None:
        if len(values) != self.num_branches:
            raise ValueError(
                f'{name} has {len(values)} entries but the module has '
                f'{self.num_branches} branches')

    def reset(self, refs: Sequence[Tensor]) -> None:
        """Prepare one model forward: cache normalized weights, new masks.

        ``refs[i]`` is any tensor shaped like branch i's state (B, C_i, ...),
        e.g. the initial z; only its batch size, channels, device and dtype
        are used.
        """
        self._check_inputs('refs', refs)
        for branch, ref in zip(self.branches, refs):
            branch.reset(ref)
        reset_weight_norm(self.post_fuse_layers)

    def release(self) -> None:
        """End one model forward: drop the cached normalized weights (the autograd graph
        keeps what a backward needs; the cache would hold a copy of them through the backward
        and the optimizer step). The next :meth:`reset` computes them again."""
        release_weight_norm(self)

    def forward(
        self,
        z: Sequence[Tensor],
        injection: Optional[Sequence[Optional[Tensor]]] = None
    ) -> Tuple[Tensor, ...]:
        """Apply f once. ``injection[i]`` (or all of it) may be None."""
        self._check_inputs('z', z)
        if injection is None:
            injection = (None, ) * self.num_branches
        self._check_inputs('injection', injection)
        feats = [
            branch(z_i, x_i)
            for branch, z_i, x_i in zip(self.branches, z, injection)
        ]
        return fuse_branches(feats, self.fuse_layers, self.post_fuse_layers)
