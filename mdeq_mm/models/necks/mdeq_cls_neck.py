"""Classification neck for MDEQ: fuse all resolutions into one vector."""
from typing import List, Optional, Sequence, Tuple, Union

import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from mmpretrain.models.backbones.resnet import Bottleneck
from torch import Tensor

# The bottlenecks widen each branch four times, as in ResNet and the authors' head.
BOTTLENECK_EXPANSION = 4


@MODELS.register_module()
class MDEQClsNeck(BaseModule):
    """HRNet-style fusion of any number of MDEQ branches for classification.

    Each branch is widened by mmpretrain's ResNet ``Bottleneck``
    (``in_channels[i]`` -> ``4 * head_channels[i]``, with a projected
    shortcut where the widths differ). Starting from the finest branch, the
    running sum is downsampled (conv3x3 stride 2 + norm + ReLU) and added to the next
    branch, then a conv1x1 + norm + ReLU maps it to ``final_channels`` and a
    global average pool gives one vector per image. Unlike
    ``HRFuseScales`` it takes any number of branches and any widths.
    Module names (``incre_modules``, ``downsamp_modules``, ``final_layer``)
    follow the authors' code so their checkpoints convert key by key.

    Args:
        in_channels (Sequence[int]): Channels of each branch, finest first.
        head_channels (Sequence[int]): Bottleneck width per branch; must have
            the same length as ``in_channels``.
        final_channels (int): Channels of the pooled output.
            Defaults to 2048.
        norm_cfg (dict): Config of the norm layers. Defaults to
            ``dict(type='BN')``.
        init_cfg (dict | list[dict], optional): Initialization config.
            Defaults to convs (weights) from N(0, 0.01), as in the authors'
            head, and norms at 1 and 0. Every conv feeds a norm, so the scale
            does not change the output, but with Kaiming's larger weights an
            optimizer step moves them far less relative to their size, and
            the model learns markedly slower.

    Example:
        >>> import torch
        >>> from mdeq_mm.models.necks import MDEQClsNeck
        >>> neck = MDEQClsNeck(in_channels=(8, 16), head_channels=(4, 8),
        ...                    final_channels=64)
        >>> feats = (torch.rand(2, 8, 16, 16), torch.rand(2, 16, 8, 8))
        >>> neck(feats)[0].shape
        torch.Size([2, 64])
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        head_channels: Sequence[int],
        final_channels: int = 2048,
        norm_cfg: dict = dict(type='BN'),
        init_cfg: Optional[Union[dict, List[dict]]] = [
            dict(type='Normal', layer='Conv2d', std=0.01),
            dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
        ]
    ) -> None:
        super().__init__(init_cfg)
        if len(in_channels) != len(head_channels):
            raise ValueError(
                f'in_channels {tuple(in_channels)} and head_channels '
                f'{tuple(head_channels)} must have the same length')
        if len(in_channels) < 1:
            raise ValueError('in_channels must list at least one branch')
        self.in_channels = tuple(in_channels)
        self.head_channels = tuple(head_channels)
        self.final_channels = final_channels
        self.norm_cfg = norm_cfg

        widths = [BOTTLENECK_EXPANSION * h for h in self.head_channels]
        self.incre_modules = self._make_incre_modules()
        self.downsamp_modules = nn.ModuleList([
            self._make_conv_norm_relu(widths[i], widths[i + 1], 3, stride=2)
            for i in range(len(widths) - 1)
        ])
        self.final_layer = self._make_conv_norm_relu(widths[-1],
                                                     final_channels, 1)

    def _make_incre_modules(self) -> nn.ModuleList:
        """One single-block layer per branch, as in HRNet's ResLayer."""
        return nn.ModuleList([
            nn.Sequential(self._make_bottleneck(c, BOTTLENECK_EXPANSION * h))
            for c, h in zip(self.in_channels, self.head_channels)
        ])

    def _make_bottleneck(self, in_channels: int, out_channels: int) -> Bottleneck:
        """A bottleneck whose shortcut is a conv1x1 + norm when the widths differ."""
        downsample = None
        if in_channels != out_channels:
            downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                build_norm_layer(self.norm_cfg, out_channels)[1])
        return Bottleneck(
            in_channels,
            out_channels,
            expansion=BOTTLENECK_EXPANSION,
            downsample=downsample,
            norm_cfg=self.norm_cfg)

    def _make_conv_norm_relu(self,
                             in_channels: int,
                             out_channels: int,
                             kernel_size: int,
                             stride: int = 1) -> nn.Sequential:
        """conv (with bias, as in the authors' head) -> norm -> ReLU."""
        return nn.Sequential(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2),
            build_norm_layer(self.norm_cfg, out_channels)[1],
            nn.ReLU(inplace=True))

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor]:
        """Return a 1-tuple with the pooled (B, final_channels) features."""
        if len(inputs) != len(self.in_channels):
            raise ValueError(
                f'MDEQClsNeck expects {len(self.in_channels)} branches, '
                f'got {len(inputs)}')
        y = self.incre_modules[0](inputs[0])
        for i, downsamp in enumerate(self.downsamp_modules):
            y = self.incre_modules[i + 1](inputs[i + 1]) + downsamp(y)
        y = self.final_layer(y)
        return (y.mean(dim=(2, 3)), )
