"""Packing a multi-resolution state into one flat tensor per sample and back.

The solvers work on a single ``(B, D)`` tensor; an MDEQ state is a tuple of
tensors ``(B, C_i, H_i, W_i)`` of different shapes. :class:`StatePacker`
records the per-sample shapes once and converts in both directions.

Under ``torch.jit.trace`` (ONNX export, FLOP counters) tensor sizes are tensors; the packer
keeps the per-sample shapes as ints (constants of the trace) and the batch size symbolic.
"""
from typing import Sequence, Tuple

import torch
from torch import Tensor


def _static_shape(t: Tensor) -> torch.Size:
    """``t.shape`` with int sizes, also under tracing (where each size is a 0-dim tensor)."""
    return torch.Size(int(d) for d in t.shape)


class StatePacker:
    """Flattens a tuple of batched tensors into ``(B, D)`` and restores it.

    Unpacking returns views of the flat tensor, so gradients flow through both
    directions and no memory is copied on the way back.

    Args:
        example (Sequence[Tensor]): Tensors of shape ``(B, ...)`` with a common
            batch size; only their shapes are used.

    Example:
        >>> packer = StatePacker((torch.zeros(2, 3, 4, 4), torch.zeros(2, 5, 2, 2)))
        >>> flat = packer.pack((torch.ones(2, 3, 4, 4), torch.ones(2, 5, 2, 2)))
        >>> flat.shape
        torch.Size([2, 68])
        >>> [t.shape for t in packer.unpack(flat)]
        [torch.Size([2, 3, 4, 4]), torch.Size([2, 5, 2, 2])]
    """

    def __init__(self, example: Sequence[Tensor]) -> None:
        if isinstance(example, Tensor) or len(example) == 0:
            raise ValueError('StatePacker expects a non-empty sequence of tensors')
        batch_sizes = {len(t) for t in example if t.dim() >= 1}
        if len(batch_sizes) != 1 or any(t.dim() < 1 for t in example):
            raise ValueError('all state tensors need the same leading batch dimension, got shapes '
                             f'{[tuple(_static_shape(t)) for t in example]}')
        self.shapes: Tuple[torch.Size, ...] = tuple(_static_shape(t)[1:] for t in example)
        self.sizes: Tuple[int, ...] = tuple(s.numel() for s in self.shapes)

    @property
    def dim(self) -> int:
        """Flat state size ``D`` per sample."""
        return sum(self.sizes)

    def pack(self, tensors: Sequence[Tensor]) -> Tensor:
        """Concatenate ``tensors`` into a ``(B, D)`` tensor."""
        if len(tensors) != len(self.shapes):
            raise ValueError(f'expected {len(self.shapes)} tensors, got {len(tensors)}')
        for i, (t, shape) in enumerate(zip(tensors, self.shapes)):
            if _static_shape(t)[1:] != shape:
                raise ValueError(f'tensor {i} has per-sample shape {tuple(_static_shape(t)[1:])}, '
                                 f'expected {tuple(shape)}')
        return torch.cat([t.reshape(t.shape[0], -1) for t in tensors], dim=1)

    def unpack(self, flat: Tensor) -> Tuple[Tensor, ...]:
        """Split a ``(B, D)`` tensor into views with the recorded shapes."""
        if flat.dim() != 2 or int(flat.shape[1]) != self.dim:
            raise ValueError(f'expected a (B, {self.dim}) tensor, got {tuple(_static_shape(flat))}')
        parts = torch.split(flat, self.sizes, dim=1)
        return tuple(p.reshape(flat.shape[0], *shape) for p, shape in zip(parts, self.shapes))
