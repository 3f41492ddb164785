"""Anderson acceleration (type II) for fixed points ``z = f(z)``."""
from typing import List, Optional, Tuple

import torch
from torch import Tensor

DEFAULT_MEMORY = 5


class AndersonSolver:
    """Anderson mixing over the last ``memory`` iterates.

    Each step finds weights ``alpha`` (summing to 1) that minimise
    ``||sum_i alpha_i g_i||^2 + ridge ||alpha||^2`` over the stored residuals
    ``g_i = f(z_i) - z_i``, i.e. ``alpha = K^{-1} 1 / (1^T K^{-1} 1)`` with
    ``K = G G^T + ridge I`` solved per sample in float64 (Cholesky), then mixes
    ``z+ = beta sum alpha_i f(z_i) + (1 - beta) sum alpha_i z_i``.
    The ridge is relative, ``lam * mean(diag(G G^T))``, so it does not depend on
    the scale of the state and ``K`` is positive definite unless every stored
    residual vanishes or is not finite; such samples step to ``z+ = f(z)``
    and are counted in ``degenerate``. The Gram matrix ``G G^T`` is kept and
    updated by one row per step, so a step reads the history twice; the
    residual is written straight into its history slot (:meth:`residual`).

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
        # products of the solver dtype, converted to float64 for each solve
        self.gram = z0.new_zeros(batch, self.memory, self.memory)
        self.count = 0
        # views per slot and per history length n, made once: a step then runs few small ops
        self._f_slots = self.fs.unbind(1)
        self._g_slots = self.gs.unbind(1)
        sizes = range(1, self.memory + 1)
        self._fs = [self.fs[:, :n] for n in sizes]
        self._gs = [self.gs[:, :n] for n in sizes]
        self._gs_t = [self.gs[:, :n].transpose(1, 2) for n in sizes]
        self._grams = [self.gram[:, :n, :n] for n in sizes]
        self._ones = [torch.ones(batch, n, 1, dtype=torch.float64, device=z0.device)
                      for n in sizes]
        self._latest = [torch.eye(n, dtype=torch.float64, device=z0.device) for n in sizes]
        # (active, solved) per step, summed into `degenerate` when it is read
        self._checks: List[Tuple[Tensor, Tensor]] = []

    @property
    def degenerate(self) -> Tensor:
        """0-dim long: steps of running samples whose ridged system could not be solved."""
        if not self._checks:
            return torch.zeros((), dtype=torch.long, device=self.gram.device)
        active, ok = (torch.stack(flags) for flags in zip(*self._checks))
        return (active & ~ok).sum()

    def residual(self, z: Tensor, fz: Tensor) -> Tensor:
        """``f(z) - z``, written into the history slot that :meth:`propose` fills next."""
        return torch.sub(fz, z, out=self._g_slots[self.count % self.memory])

    def _weights(self, n: int, latest: int, active: Tensor) -> Tensor:
        """Mixing weights ``(B, n)`` in float64 from the first ``n`` history slots."""
        ridged = self._grams[n - 1].to(torch.float64, copy=True)
        diag = torch.diagonal(ridged, dim1=1, dim2=2)
        diag += self.lam * diag.mean(dim=1, keepdim=True)
        chol, info = torch.linalg.cholesky_ex(ridged)
        sol = torch.cholesky_solve(self._ones[n - 1], chol).squeeze(2)
        weights = sol / sol.sum(dim=1, keepdim=True)
        ok = (info == 0) & torch.isfinite(weights).all(dim=1)
        self._checks.append((active, ok))
        return torch.where(ok.unsqueeze(1), weights, self._latest[n - 1][latest])

    def propose(self, z: Tensor, fz: Tensor, g: Tensor, active: Tensor) -> Tensor:
        """Next iterate from ``z``, ``f(z)`` and ``g = f(z) - z``; ``active``: running samples."""
        slot = self.count % self.memory
        if g is not self._g_slots[slot]:  # not made by residual()
            self._g_slots[slot].copy_(g)
        self._f_slots[slot].copy_(fz)
        self.count += 1
        n = min(self.count, self.memory)
        row = torch.bmm(g.unsqueeze(1), self._gs_t[n - 1])
        gram = self._grams[n - 1]
        gram.narrow(1, slot, 1).copy_(row)
        gram.narrow(2, slot, 1).copy_(row.transpose(1, 2))
        alpha = self._weights(n, slot, active).to(z.dtype).unsqueeze(1)
        mixed_f = torch.bmm(alpha, self._fs[n - 1]).squeeze(1)
        if self.beta == 1.0:
            return mixed_f
        mixed_g = torch.bmm(alpha, self._gs[n - 1]).squeeze(1)
        return mixed_f - (1.0 - self.beta) * mixed_g
