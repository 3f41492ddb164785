"""Limited-memory good Broyden method for the root of ``g(z) = f(z) - z``."""
from typing import Optional

import torch
from torch import Tensor

DEFAULT_MEMORY = 10


class BroydenSolver:
    """Good Broyden with an inverse-Jacobian estimate ``B = -I + sum_i u_i v_i^T``.

    ``B`` approximates ``(dg/dz)^{-1}``; it starts at ``-I`` (exact when ``f``
    is constant), so the first update ``-B g = g`` gives ``z1 = f(z0)``. Each
    step uses step size 1 without line search and adds one rank-one pair.
    When ``memory`` pairs are stored the estimate restarts from ``-I`` and
    takes the newest pair, so it stays a consistent Broyden matrix (dropping
    only the oldest pair would not be one, and stalls the solve). The default
    ``memory`` caps the history, so memory does not grow with ``max_iter``;
    ``memory = max_iter`` never restarts and can reach a lower residual in
    long solves.

    The pairs are stored as contiguous rows of ``(B, memory, D)`` tensors,
    allocated once: budget ``2 * memory * B * D`` floats. A step reads the
    stored pairs four times, for ``B g`` and ``B^T s``: ``B g_prev`` is kept
    from the last step, so the update's ``B y`` and the next step ``B' g``
    follow in closed form.

    Every quantity is per sample, so samples never influence each other.
    The solve loop, residuals and stopping live in :func:`mdeq_mm.deq.solve`.

    Args:
        z0 (Tensor): ``(B, D)`` initial state in the solver dtype.
        max_iter (int): Evaluation budget; caps the useful memory.
        memory (int, optional): Number of rank-one pairs kept. Defaults to
            ``min(max_iter, DEFAULT_MEMORY)``.
    """

    options = ('memory',)

    def __init__(self, z0: Tensor, max_iter: int, memory: Optional[int] = None) -> None:
        batch, dim = z0.shape
        self.memory = min(memory or DEFAULT_MEMORY, max_iter)
        self.us = z0.new_zeros(batch, self.memory, dim)
        self.vs = z0.new_zeros(batch, self.memory, dim)
        self.n_updates = 0
        self.prev_g: Optional[Tensor] = None
        self.prev_bg: Optional[Tensor] = None
        self.degenerate = torch.zeros((), dtype=torch.long, device=z0.device)
        self._eps = torch.finfo(z0.dtype).eps

    def _coeffs(self, rows: Tensor, x: Tensor) -> Tensor:
        """``(B, n)`` products of ``x`` with the ``n`` stored ``rows``."""
        n = self.n_updates
        # x^T R^T runs as a BLAS product over contiguous rows; R x would run much slower
        return torch.bmm(x.unsqueeze(1), rows[:, :n].transpose(1, 2)).squeeze(1)

    def _combine(self, coeffs: Tensor, rows: Tensor) -> Tensor:
        """``sum_i coeffs_i rows_i`` over the stored rows, ``(B, D)``."""
        return torch.bmm(coeffs.unsqueeze(1), rows[:, :coeffs.shape[1]]).squeeze(1)

    def _apply(self, x: Tensor) -> Tensor:
        """``B x`` with ``B = -I + U^T V`` (rows ``u_i``, ``v_i``)."""
        return self._combine(self._coeffs(self.vs, x), self.us) - x

    def _apply_transposed(self, x: Tensor) -> Tensor:
        """``B^T x`` with ``B^T = -I + V^T U``."""
        return self._combine(self._coeffs(self.us, x), self.vs) - x

    def propose(self, z: Tensor, fz: Tensor, g: Tensor, active: Tensor) -> Tensor:
        """Next iterate from ``z``, ``f(z)`` and ``g = f(z) - z``; ``active`` marks running samples.

        With ``s = -B g_prev`` the step proposed last time and ``y`` the change
        of ``g``, the good-Broyden update ``B' = B + u v^T``, ``v = B^T s``,
        ``u = (s - B y) / (v^T y)`` maps ``y`` to ``s``; ``B y = B g - B g_prev``
        and the next step ``B' g = B g + u (v^T g)`` need no further pass.
        """
        if self.prev_g is None:
            self.prev_g, self.prev_bg = g, -g
            return fz
        s = -self.prev_bg
        if self.n_updates == self.memory:
            # restart from B = -I, which then takes the newest pair
            self.n_updates = 0
            self.prev_bg = -self.prev_g
        b_g = self._apply(g)
        y = g - self.prev_g
        v = self._apply_transposed(s)
        denom = torch.linalg.vecdot(v, y)
        ok = active & (denom.abs() > self._eps * v.norm(dim=1) * y.norm(dim=1))
        scale = torch.where(ok, 1.0 / torch.where(ok, denom, 1.0), 0.0).unsqueeze(1)
        u = (s - b_g + self.prev_bg) * scale
        slot = self.n_updates
        self.us[:, slot] = u
        torch.mul(v, ok.unsqueeze(1), out=self.vs[:, slot])
        b_g = b_g + u * torch.linalg.vecdot(v, g).unsqueeze(1)
        self.n_updates += 1
        self.degenerate += (active & ~ok).sum()
        self.prev_g, self.prev_bg = g, b_g
        return z - b_g
