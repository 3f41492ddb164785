"""Anderson acceleration (type II) for fixed points ``z = f(z)``."""
from typing import Optional

import torch
from torch import Tensor

DEFAULT_MEMORY = 5
RIDGE_RETRY_FACTORS = (1.0, 1e2, 1e4)


class AndersonSolver:
    """Anderson mixing over the last ``memory`` iterates.

    Each step finds weights ``alpha`` (summing to 1) that minimise
    ``||sum_i alpha_i (f(z_i) - z_i)||^2 + ridge ||alpha||^2`` through the
    bordered system ``[[0, 1^T], [1, G G^T + ridge I]] [nu; alpha] = [1; 0]``,
    solved per sample in float64, then mixes
    ``z+ = beta sum alpha_i f(z_i) + (1 - beta) sum alpha_i z_i``.
    The ridge is relative, ``lam * mean(diag(G G^T))``, so it does not depend on
    the scale of the state. If a system is singular the ridge is raised
    (x100, x10^4) and, as a last resort, the step falls back to ``z+ = f(z)``;
    such samples are counted in ``degenerate``. All retries are computed
    unconditionally (the systems are tiny) to avoid a host sync.

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
        self.xs = z0.new_zeros(batch, self.memory, dim)
        self.fs = z0.new_zeros(batch, self.memory, dim)
        self.count = 0
        self.degenerate = torch.zeros((), dtype=torch.long, device=z0.device)

    def _weights(self, n: int, latest: int, active: Tensor) -> Tensor:
        """Mixing weights ``(B, n)`` in float64 from the first ``n`` history slots."""
        g = self.fs[:, :n] - self.xs[:, :n]
        gram = torch.bmm(g, g.transpose(1, 2)).double()
        batch = gram.shape[0]
        scale = torch.diagonal(gram, dim1=1, dim2=2).mean(dim=1)
        system = gram.new_zeros(batch, n + 1, n + 1)
        system[:, 0, 1:] = 1.0
        system[:, 1:, 0] = 1.0
        system[:, 1:, 1:] = gram
        rhs = gram.new_zeros(batch, n + 1)
        rhs[:, 0] = 1.0
        eye = torch.eye(n, dtype=gram.dtype, device=gram.device)

        weights = torch.nn.functional.one_hot(
            torch.full((batch,), latest, device=gram.device), n).to(gram.dtype)
        done = torch.zeros(batch, dtype=torch.bool, device=gram.device)
        first_ok = None
        for factor in RIDGE_RETRY_FACTORS:
            ridged = system.clone()
            ridged[:, 1:, 1:] += (factor * self.lam * scale)[:, None, None] * eye
            sol, info = torch.linalg.solve_ex(ridged, rhs)
            ok = (info == 0) & torch.isfinite(sol).all(dim=1)
            weights = torch.where((ok & ~done).unsqueeze(1), sol[:, 1:], weights)
            done |= ok
            if first_ok is None:
                first_ok = ok
        self.degenerate += (active & ~first_ok).sum()
        return weights

    def propose(self, z: Tensor, fz: Tensor, active: Tensor) -> Tensor:
        """Next iterate from ``z`` and ``f(z)``; ``active`` marks running samples."""
        slot = self.count % self.memory
        self.xs[:, slot] = z
        self.fs[:, slot] = fz
        self.count += 1
        n = min(self.count, self.memory)
        alpha = self._weights(n, slot, active).to(z.dtype).unsqueeze(1)
        mixed_f = torch.bmm(alpha, self.fs[:, :n]).squeeze(1)
        if self.beta == 1.0:
            return mixed_f
        mixed_z = torch.bmm(alpha, self.xs[:, :n]).squeeze(1)
        return self.beta * mixed_f + (1.0 - self.beta) * mixed_z
