"""Weight-normalized convolution whose normalized weight is cached per forward.

An MDEQ calls its layer f dozens of times per image (once per solver step).
Re-normalizing every weight at every call is wasted work and, with autograd,
wasted graph memory; the weight only changes when the optimizer steps. So the
normalized weight is computed once per model forward by ``reset_weight``,
reused by every call and dropped by ``release_weight`` when the forward is done
(the autograd graph keeps what the backward needs).
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

_IntOrPair = Union[int, Tuple[int, int]]


def channel_norm(weight: Tensor) -> Tensor:
    """L2 norm of each output channel's filter, shaped (out, 1, 1, 1): the ``weight_g`` that
    makes a weight-normalized conv compute ``weight``.

    Example:
        >>> import torch
        >>> channel_norm(torch.full((2, 1, 2, 2), 3.0)).flatten().tolist()
        [6.0, 6.0]
    """
    return torch.linalg.vector_norm(
        weight, dim=tuple(range(1, weight.dim())), keepdim=True)


class WeightNormConv2d(nn.Conv2d):
    """``nn.Conv2d`` with weight normalization per output channel.

    The weight is ``weight_g * weight_v / ||weight_v||`` with the norm taken
    over each output channel's filter. The parameter names match
    ``torch.nn.utils.weight_norm(conv, dim=0)`` (``weight_g`` of shape
    (out, 1, 1, 1) and ``weight_v`` shaped like the conv weight), so such
    checkpoints load unchanged. ``weight_g`` starts at ``||weight_v||``: the
    initial weight equals the default ``nn.Conv2d`` initialisation.

    The layer has no ``weight`` attribute; call :meth:`compute_weight` to get
    the effective weight. :meth:`reset_weight` computes it once and caches it
    (differentiably); ``forward`` then reuses the cache. Without a cache, or if
    the cache is stale (parameters changed in place, e.g. by an optimizer step
    or ``load_state_dict``, moved to another device/dtype, or cached under
    ``torch.no_grad`` but now needed with gradients), ``forward`` computes the
    weight for that call only, so the layer is also correct standalone.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int | tuple[int, int]): Kernel size.
        stride (int | tuple[int, int]): Stride. Defaults to 1.
        padding (int | tuple[int, int]): Zero padding. Defaults to 0.
        dilation (int | tuple[int, int]): Dilation. Defaults to 1.
        groups (int): Convolution groups. Defaults to 1.
        bias (bool): Whether to add a learnable bias. Defaults to True.

    Example:
        >>> import torch
        >>> conv = WeightNormConv2d(4, 8, kernel_size=3, padding=1)
        >>> conv.reset_weight()
        >>> conv(torch.rand(2, 4, 16, 16)).shape
        torch.Size([2, 8, 16, 16])
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: _IntOrPair,
                 stride: _IntOrPair = 1,
                 padding: _IntOrPair = 0,
                 dilation: _IntOrPair = 1,
                 groups: int = 1,
                 bias: bool = True) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias)
        # Replace the plain weight (already initialised by nn.Conv2d) with
        # its direction and magnitude.
        weight = self._parameters.pop('weight').detach()
        self.weight_v = nn.Parameter(weight.clone())
        self.weight_g = nn.Parameter(channel_norm(weight))
        self._cached_weight: Optional[Tensor] = None
        self._cached_versions: Tuple[int, int] = (-1, -1)

    def compute_weight(self) -> Tensor:
        """Return ``g * v / ||v||`` (differentiable in g and v)."""
        return self.weight_v * (self.weight_g / channel_norm(self.weight_v))

    def reset_weight(self) -> None:
        """Compute and cache the normalized weight for the coming forward."""
        self._cached_weight = self.compute_weight()
        self._cached_versions = (self.weight_v._version,
                                 self.weight_g._version)

    def release_weight(self) -> None:
        """Drop the cached weight; the autograd graph keeps what a backward needs."""
        self._cached_weight = None
        self._cached_versions = (-1, -1)

    def _cache_is_fresh(self) -> bool:
        """Whether the cached weight still matches the parameters."""
        cached = self._cached_weight
        if cached is None:
            return False
        v, g = self.weight_v, self.weight_g
        if self._cached_versions != (v._version, g._version):
            return False
        if cached.device != v.device or cached.dtype != v.dtype:
            return False
        needs_grad = torch.is_grad_enabled() and (v.requires_grad
                                                  or g.requires_grad)
        return cached.requires_grad or not needs_grad

    def forward(self, x: Tensor) -> Tensor:
        weight = (
            self._cached_weight
            if self._cache_is_fresh() else self.compute_weight())
        return self._conv_forward(x, weight, self.bias)

    def __getstate__(self) -> dict:
        # The cache may carry an autograd graph, which cannot be deep-copied
        # or pickled (e.g. by EMA hooks); it is rebuilt by the next reset.
        state = super().__getstate__()
        state['_cached_weight'] = None
        state['_cached_versions'] = (-1, -1)
        return state


def reset_weight_norm(module: nn.Module) -> None:
    """Refresh the cached weight of every WeightNormConv2d under ``module``.

    Call once per model forward, before the solver iterations.
    """
    for m in module.modules():
        if isinstance(m, WeightNormConv2d):
            m.reset_weight()


def release_weight_norm(module: nn.Module) -> None:
    """Drop the cached weight of every WeightNormConv2d under ``module``.

    Call when the model forward is done: otherwise the cache holds a copy of every
    normalized weight through the backward and the optimizer step.
    """
    for m in module.modules():
        if isinstance(m, WeightNormConv2d):
            m.release_weight()


def make_conv(in_channels: int,
              out_channels: int,
              kernel_size: int,
              stride: int = 1,
              weight_norm: bool = False) -> nn.Conv2d:
    """A bias-free conv with 'same' padding, weight-normalized if asked."""
    conv_type = WeightNormConv2d if weight_norm else nn.Conv2d
    return conv_type(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=kernel_size // 2,
        bias=False)
