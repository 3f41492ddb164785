"""Anderson acceleration (type II) for fixed points ``z = f(z)``."""
from typing import Optional

import torch
from torch import Tensor

DEFAULT_MEMORY = 5


class AndersonSolver:
    """Anderson mixing over the last ``memory`` iterates.

    Each step finds weights ``alpha`` (summing to 1) that minimise
    ``||sum_i alpha_i g_i||^2 + ridge ||alpha||^2`` over the stored residuals
    ``g_i = f(z_i) - z_i``, i.e. ``alpha = K^{-1} 1 / (1^T K^{-1} 1)`` with
    ``K = G G^T + ridge I`` solved per sample in float64, then mixes
    ``z+ = beta sum alpha_i f(z_i) + (1 - beta) sum alpha_i z_i``.
    The ridge is relative, ``lam * mean(diag(G G^T))``, so it does not depend on
    the scale of the state and ``K`` is positive definite unless every stored
    residual vanishes or is not finite; such samples step to ``z+ = f(z)``
    and are counted in ``degenerate``. The Gram matrix ``G G^T`` is kept and
    updated by one row per step, so a step reads the history twice.

    Args:
        z0 (Tensor): ``(B, D)`` initial state in the solver dtype.
        max_iter (int): Evaluation budget; caps the useful memory.
        memory (int, optional): History length m. Default: 5.
        lam (float): Relative ridge. Default: 1e-4.
        beta (float): Mixing parameter; 1 uses only ``f`` values. Default: 1.0.
    """

    options = ('memory', 'lam', 'beta')

    def __init__(self,
                 z0: Tensor,
                 max_iter: int,
                 memory: Optional[int] = None,
                 lam: float = 1e-4,
                 beta: float = 1.0) -> None:
        batch, dim = z0.shape
        self.memory = min(memory or DEFAULT_MEMORY, max_iter)
        self.lam = lam
        self.beta = beta
        # slots are written in order before they are read, so no zero fill
        self.fs = z0.new_empty(batch, self.memory, dim)
        self.gs = z0.new_empty(batch, self.memory, dim)
        self.gram = torch.zeros(batch, self.memory, self.memory, dtype=torch.float64,
                                device=z0.device)
        self.count = 0
        self.degenerate = torch.zeros((), dtype=torch.long, device=z0.device)

    def _weights(self, n: int, latest: int, active: Tensor) -> Tensor:
        """Mixing weights ``(B, n)`` in float64 from the first ``n`` history slots."""
        gram = self.gram[:, :n, :n]
        scale = torch.diagonal(gram, dim1=1, dim2=2).mean(dim=1)
        eye = torch.eye(n, dtype=gram.dtype, device=gram.device)
        sol, info = torch.linalg.solve_ex(gram + (self.lam * scale)[:, None, None] * eye,
                                          gram.new_ones(gram.shape[0], n))
        weights = sol / sol.sum(dim=1, keepdim=True)
        ok = (info == 0) & torch.isfinite(weights).all(dim=1)
        self.degenerate += (active & ~ok).sum()
        fallback = gram.new_zeros(gram.shape[0], n)
        fallback[:, latest] = 1.0
        return torch.where(ok.unsqueeze(1), weights, fallback)

    def propose(self, z: Tensor, fz: Tensor, g: Tensor, active: Tensor) -> Tensor:
        """Next iterate from ``z``, ``f(z)`` and ``g = f(z) - z``; ``active``: running samples."""
        slot = self.count % self.memory
        self.fs[:, slot] = fz
        self.gs[:, slot] = g
        self.count += 1
        n = min(self.count, self.memory)
        row = torch.bmm(g.unsqueeze(1), self.gs[:, :n].transpose(1, 2)).squeeze(1).double()
        self.gram[:, slot, :n] = row
        self.gram[:, :n, slot] = row
        alpha = self._weights(n, slot, active).to(z.dtype).unsqueeze(1)
        mixed_f = torch.bmm(alpha, self.fs[:, :n]).squeeze(1)
        if self.beta == 1.0:
            return mixed_f
        mixed_g = torch.bmm(alpha, self.gs[:, :n]).squeeze(1)
        return mixed_f - (1.0 - self.beta) * mixed_g
