"""Channel dropout whose mask is fixed for a whole equilibrium solve."""
from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor


class VariationalDropout2d(nn.Module):
    """Drop whole channels with one mask per model forward.

    A DEQ layer is applied many times while solving for its fixed point; a new
    dropout mask at every call would change the function being solved. The
    mask, of shape (B, C, 1, 1) and scaled by ``1 / (1 - p)``, is therefore
    sampled once by :meth:`reset_mask` and reused by every call until the next
    reset. The layer is the identity in eval mode or when ``p == 0``.

    Args:
        p (float): Probability of dropping a channel, in [0, 1).
            Defaults to 0.

    Example:
        >>> import torch
        >>> drop = VariationalDropout2d(0.2)
        >>> x = torch.rand(2, 8, 16, 16)
        >>> drop.reset_mask(x)
        >>> torch.equal(drop(x), drop(x))
        True
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f'dropout probability p must be in [0, 1), '
                             f'got {p}')
        self.p = p
        self.mask: Optional[Tensor] = None

    @property
    def active(self) -> bool:
        """Whether forward applies a mask (training mode and p > 0)."""
        return self.training and self.p > 0

    def reset_mask(self, ref: Tensor) -> None:
        """Sample a new mask shaped (B, C, 1, 1) like ``ref``'s first dims.

        ``ref`` is any tensor shaped like this layer's input (B, C, ...); the
        mask is created on its device and dtype. Inactive layers drop any mask.
        """
        if not self.active:
            self.mask = None
            return
        keep = 1.0 - self.p
        mask = torch.empty(
            ref.shape[0],
            ref.shape[1],
            1,
            1,
            device=ref.device,
            dtype=ref.dtype).bernoulli_(keep)
        self.mask = mask.div_(keep)

    def forward(self, x: Tensor) -> Tensor:
        if not self.active:
            return x
        if self.mask is None:
            raise RuntimeError(
                'VariationalDropout2d is in training mode with p > 0 but has '
                'no mask; call reset_mask() once per model forward first')
        if x.shape[:2] != self.mask.shape[:2]:
            raise ValueError(
                f'input of shape {tuple(x.shape)} does not match the dropout '
                f'mask for batch size {self.mask.shape[0]} and '
                f'{self.mask.shape[1]} channels; call reset_mask() with a '
                f'tensor from the current batch')
        return x * self.mask.to(dtype=x.dtype)

    def extra_repr(self) -> str:
        return f'p={self.p}'
