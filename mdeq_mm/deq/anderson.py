"""Anderson acceleration (type II) for fixed points ``z = f(z)``."""
from typing import Dict, List, Optional, Tuple

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
    residual vanishes or is not finite; where its factorization fails the
    sample steps to ``z+ = f(z)`` and is counted in ``degenerate``. The Gram
    matrix ``G G^T`` is kept and updated by one row per step, so a step reads
    the history twice; the residual is written straight into its history slot
    (:meth:`residual`).

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
        # products in the solver dtype, converted to float64 for each solve
        self.gram = z0.new_zeros(batch, self.memory, self.memory)
        self.count = 0
        # Views and constants made once, per slot or per history length n, so that a step runs
        # few small operations (each costs microseconds however small its tensors).
        self._f_slots = self.fs.unbind(1)
        self._g_slots = self.gs.unbind(1)
        self._g_rows = self.gs.split(1, dim=1)
        sizes = range(1, self.memory + 1)
        self._fs = [self.fs[:, :n] for n in sizes]
        self._gs_t = [self.gs[:, :n].transpose(1, 2) for n in sizes]
        self._grams = [self.gram[:, :n, :n] for n in sizes]
        self._ridged = [torch.empty(batch, n, n, dtype=torch.float64, device=z0.device)
                        for n in sizes]
        self._diags = [torch.diagonal(k, dim1=1, dim2=2) for k in self._ridged]
        ones = torch.ones(batch, self.memory, 1, dtype=torch.float64, device=z0.device)
        self._ones = [ones[:, :n] for n in sizes]
        self._eye = torch.eye(self.memory, dtype=torch.float64, device=z0.device)
        # per (n, slot): row and column `slot` of the n x n Gram block, and the weights that
        # pick the newest iterate alone
        self._slot_views: Dict[Tuple[int, int], Tuple[Tensor, Tensor, Tensor]] = {}
        # (active, solved) per step, summed into `degenerate` when it is read
        self._checks: List[Tuple[Tensor, Tensor]] = []

    @property
    def degenerate(self) -> Tensor:
        """0-dim long: steps of running samples whose ridged system could not be factored."""
        if not self._checks:
            return torch.zeros((), dtype=torch.long, device=self.gram.device)
        active, ok = (torch.stack(flags).flatten(1) for flags in zip(*self._checks))
        return (active & ~ok).sum()

    def residual(self, z: Tensor, fz: Tensor) -> Tensor:
        """``f(z) - z``, written into the history slot that :meth:`propose` fills next."""
        return torch.sub(fz, z, out=self._g_slots[self.count % self.memory])

    def _views(self, n: int, slot: int) -> Tuple[Tensor, Tensor, Tensor]:
        """Row and column ``slot`` of the ``n x n`` Gram block, both ``(B, 1, n)``, and the
        ``(n, 1)`` weights of slot ``slot`` alone."""
        views = self._slot_views.get((n, slot))
        if views is None:
            gram = self._grams[n - 1]
            views = (gram.narrow(1, slot, 1), gram.narrow(2, slot, 1).transpose(1, 2),
                     self._eye[:n, slot:slot + 1])
            self._slot_views[(n, slot)] = views
        return views

    def _weights(self, n: int, alone: Tensor, active: Tensor) -> Tensor:
        """Mixing weights ``(B, n, 1)`` in float64 from the first ``n`` history slots.

        A Cholesky factorization that fails (``K`` not positive definite) gives the sample
        the weights ``alone`` (the newest iterate); where it succeeds the positive ridge keeps
        the solution finite.
        """
        ridged, diag = self._ridged[n - 1], self._diags[n - 1]
        ridged.copy_(self._grams[n - 1])
        diag += diag.sum(dim=1, keepdim=True).mul_(self.lam / n)
        chol, info = torch.linalg.cholesky_ex(ridged)
        sol = torch.cholesky_solve(self._ones[n - 1], chol)
        ok = (info == 0).view(-1, 1, 1)
        self._checks.append((active, ok))
        return torch.where(ok, sol / sol.sum(dim=1, keepdim=True), alone)

    def propose(self, z: Tensor, fz: Tensor, g: Tensor, active: Tensor) -> Tensor:
        """Next iterate from ``z``, ``f(z)`` and ``g = f(z) - z``; ``active``: running samples.

        ``g`` is copied into the history unless it is the slot :meth:`residual` wrote.
        """
        slot = self.count % self.memory
        if g is not self._g_slots[slot]:  # not made by residual()
            self._g_slots[slot].copy_(g)
        self._f_slots[slot].copy_(fz)
        self.count += 1
        n = min(self.count, self.memory)
        row = torch.bmm(self._g_rows[slot], self._gs_t[n - 1])
        gram_row, gram_col, alone = self._views(n, slot)
        gram_row.copy_(row)
        gram_col.copy_(row)
        alpha = self._weights(n, alone, active).mT.to(z.dtype)
        mixed_f = torch.bmm(alpha, self._fs[n - 1]).squeeze(1)
        if self.beta == 1.0:
            return mixed_f
        mixed_g = torch.bmm(alpha, self.gs[:, :n]).squeeze(1)
        return mixed_f - (1.0 - self.beta) * mixed_g
