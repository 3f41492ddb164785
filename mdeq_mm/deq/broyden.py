"""Limited-memory good Broyden method for the root of ``g(z) = f(z) - z``."""
from typing import Optional

import torch
from torch import Tensor


class BroydenSolver:
    """Good Broyden with an inverse-Jacobian estimate ``B = -I + U V^T``.

    ``B`` approximates ``(dg/dz)^{-1}``; it starts at ``-I`` (exact when ``f``
    is constant), so the first update ``-B g = g`` gives ``z1 = f(z0)``. Each
    step uses step size 1 without line search and adds one rank-one pair to a
    ring of ``memory`` columns. Once the ring is full the oldest pair is
    overwritten; later pairs were built on top of it, so the estimate is no
    longer a consistent Broyden matrix and convergence can suffer. Keep
    ``memory >= max_iter - 1`` (the default) unless memory is the bottleneck.
    ``U`` and ``V`` have shape ``(B, D, memory)`` and are allocated once:
    budget ``2 * memory * B * D`` floats.

    Every quantity is per sample, so samples never influence each other.
    The solve loop, residuals and stopping live in :func:`mdeq_mm.deq.solve`.

    Args:
        z0 (Tensor): ``(B, D)`` initial state in the solver dtype.
        max_iter (int): Evaluation budget; caps the useful memory.
        memory (int, optional): Number of rank-one pairs kept. Defaults to
            ``max_iter`` (nothing is forgotten).
    """

    options = ('memory',)

    def __init__(self, z0: Tensor, max_iter: int, memory: Optional[int] = None) -> None:
        batch, dim = z0.shape
        self.memory = min(memory or max_iter, max_iter)
        self.us = z0.new_zeros(batch, dim, self.memory)
        self.vs = z0.new_zeros(batch, dim, self.memory)
        self.n_updates = 0
        self.prev_z: Optional[Tensor] = None
        self.prev_g: Optional[Tensor] = None
        self.degenerate = torch.zeros((), dtype=torch.long, device=z0.device)
        self._eps = torch.finfo(z0.dtype).eps

    def _low_rank(self, left: Tensor, right: Tensor, x: Tensor) -> Tensor:
        """``left[:, :, :n] (right[:, :, :n]^T x)`` over the ``n`` pairs stored so far."""
        n = min(self.n_updates, self.memory)
        if n == 0:
            return torch.zeros_like(x)
        coeff = torch.bmm(x.unsqueeze(1), right[:, :, :n])
        return torch.bmm(coeff, left[:, :, :n].transpose(1, 2)).squeeze(1)

    def _apply(self, x: Tensor) -> Tensor:
        """``B x`` with ``B = -I + U V^T``."""
        return self._low_rank(self.us, self.vs, x) - x

    def _apply_transposed(self, x: Tensor) -> Tensor:
        """``B^T x`` with ``B^T = -I + V U^T``."""
        return self._low_rank(self.vs, self.us, x) - x

    def _update(self, s: Tensor, y: Tensor, active: Tensor) -> None:
        """Rank-one good-Broyden update so that the new ``B`` maps ``y`` to ``s``."""
        b_y = self._apply(y)
        v = self._apply_transposed(s)
        denom = (v * y).sum(dim=1)
        ok = active & (denom.abs() > self._eps * v.norm(dim=1) * y.norm(dim=1))
        safe = torch.where(ok, denom, torch.ones_like(denom))
        keep = ok.unsqueeze(1)
        slot = self.n_updates % self.memory
        self.us[:, :, slot] = torch.where(keep, (s - b_y) / safe.unsqueeze(1), 0.0)
        self.vs[:, :, slot] = torch.where(keep, v, 0.0)
        self.n_updates += 1
        self.degenerate += (active & ~ok).sum()

    def propose(self, z: Tensor, fz: Tensor, active: Tensor) -> Tensor:
        """Next iterate from ``z`` and ``f(z)``; ``active`` marks running samples."""
        g = fz - z
        if self.prev_g is not None:
            self._update(z - self.prev_z, g - self.prev_g, active)
        self.prev_z, self.prev_g = z, g
        return z - self._apply(g)
