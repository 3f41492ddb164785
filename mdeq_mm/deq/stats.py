"""Statistics of one fixed-point solve, kept as per-sample tensors."""
from dataclasses import dataclass
from typing import Dict

from torch import Tensor


@dataclass
class SolverStats:
    """What a solver did, per sample, returned as data instead of printed.

    All tensors stay on the solver's device; nothing here forces a host sync
    until :meth:`to_dict` is called. Iterate ``t`` is the ``t``-th point at
    which ``f`` was evaluated (``t = 0`` is ``z0``), so row ``t`` of the traces
    holds the residual of iterate ``t`` and ``abs_trace[best_step[b], b] ==
    abs_res[b]``.

    Args:
        steps (Tensor): ``(B,)`` long, evaluations of ``f`` used by each sample
            until it stopped (converged, flagged or ran out of budget).
        best_step (Tensor): ``(B,)`` long, index of the returned iterate.
        abs_res (Tensor): ``(B,)`` ``||f(z) - z||`` of the returned iterate.
        rel_res (Tensor): ``(B,)`` ``||f(z) - z|| / (||f(z)|| + eps)`` of the
            returned iterate.
        abs_trace (Tensor): ``(T, B)`` absolute residual of every iterate.
        rel_trace (Tensor): ``(T, B)`` relative residual of every iterate.
        nan (Tensor): ``(B,)`` bool, ``f`` produced NaN/Inf for the sample.
        diverged (Tensor): ``(B,)`` bool, the residual grew beyond the
            divergence factor times its starting value.
        stalled (Tensor): ``(B,)`` bool, the sample stopped on the
            stagnation rule (``stall_steps``) before reaching ``tol``.
        nfe (int): Total evaluations of ``f`` on the batch (``T``).
        tol (float): Tolerance the solve stopped at.
        stop_mode (str): ``'abs'`` or ``'rel'``, residual compared with ``tol``.
        degenerate (Tensor): 0-dim long, per-sample updates whose inner system
            was singular (Broyden update skipped, Anderson ridge retried).
    """

    steps: Tensor
    best_step: Tensor
    abs_res: Tensor
    rel_res: Tensor
    abs_trace: Tensor
    rel_trace: Tensor
    nan: Tensor
    diverged: Tensor
    stalled: Tensor
    nfe: int
    tol: float
    stop_mode: str
    degenerate: Tensor

    @property
    def residual(self) -> Tensor:
        """``(B,)`` residual of the returned iterate in ``stop_mode``."""
        return self.rel_res if self.stop_mode == 'rel' else self.abs_res

    @property
    def converged(self) -> Tensor:
        """``(B,)`` bool, the returned iterate is within ``tol``."""
        return self.residual < self.tol

    @property
    def failed(self) -> Tensor:
        """``(B,)`` bool, the sample hit NaN/Inf or diverged."""
        return self.nan | self.diverged

    def to_dict(self) -> Dict[str, float]:
        """Batch means as Python numbers for logging (syncs with the device)."""
        return {
            'steps': self.steps.float().mean().item(),
            'best_step': self.best_step.float().mean().item(),
            'abs_res': self.abs_res.float().mean().item(),
            'rel_res': self.rel_res.float().mean().item(),
            'converged': self.converged.float().mean().item(),
            'nan': self.nan.float().mean().item(),
            'diverged': self.diverged.float().mean().item(),
            'stalled': self.stalled.float().mean().item(),
            'degenerate': float(self.degenerate.item()),
            'nfe': float(self.nfe),
        }
