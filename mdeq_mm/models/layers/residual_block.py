"""The per-resolution residual block of the MDEQ layer f."""
from typing import Optional

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .variational_dropout import VariationalDropout2d
from .weight_norm_conv import make_conv, reset_weight_norm


class MDEQBasicBlock(nn.Module):
    """Residual block of one MDEQ branch, with the input injected inside.

    ``h = ReLU(GN(conv1(z)))`` widens to ``expansion * channels``;
    ``h = GN(drop(conv2(h)) + injection)``; ``out = GN(ReLU(h + z))``.
    Only GroupNorm is used: batch statistics would change at every solver
    step. Attribute names follow the authors' code so their checkpoints map
    directly.

    Args:
        channels (int): Channels of the branch (input and output).
        expansion (int): Width factor of the hidden layer. Defaults to 5.
        num_groups (int): GroupNorm groups. Defaults to 8.
        dropout (float): Variational dropout after ``conv2``. Defaults to 0.
        weight_norm (bool): Weight-normalize ``conv1`` and ``conv2``.
            Defaults to True.

    Example:
        >>> import torch
        >>> block = MDEQBasicBlock(16, expansion=2, num_groups=4)
        >>> z = torch.rand(2, 16, 8, 8)
        >>> block.reset(z)
        >>> block(z, injection=torch.rand(2, 16, 8, 8)).shape
        torch.Size([2, 16, 8, 8])
    """

    def __init__(self,
                 channels: int,
                 expansion: int = 5,
                 num_groups: int = 8,
                 dropout: float = 0.0,
                 weight_norm: bool = True) -> None:
        super().__init__()
        hidden = expansion * channels
        self.conv1 = make_conv(channels, hidden, 3, weight_norm=weight_norm)
        self.gn1 = nn.GroupNorm(num_groups, hidden)
        self.conv2 = make_conv(hidden, channels, 3, weight_norm=weight_norm)
        self.gn2 = nn.GroupNorm(num_groups, channels)
        self.gn3 = nn.GroupNorm(num_groups, channels)
        self.drop = VariationalDropout2d(dropout)

    def reset(self, ref: Tensor) -> None:
        """Prepare one model forward: cache weights, sample a dropout mask.

        ``ref`` is any tensor shaped like the block input (B, C, H, W).
        """
        reset_weight_norm(self)
        self.drop.reset_mask(ref)

    def forward(self, z: Tensor, injection: Optional[Tensor] = None) -> Tensor:
        h = F.relu(self.gn1(self.conv1(z)))
        h = self.drop(self.conv2(h))
        if injection is not None:
            h = h + injection
        h = self.gn2(h)
        return self.gn3(F.relu(h + z))
