"""A fixed-budget solve that traces and exports: :func:`solve_fixed_budget`.

:func:`mdeq_mm.deq.solve` ends a batch early once every sample has stopped (a host read
of a device flag) and reads the stop mask on the host to copy rows; its solvers write
into preallocated buffers in place. None of this survives tracing into a static graph
(``torch.jit.trace``, ``torch.onnx.export``). Here every solve takes exactly
``max_iter`` evaluations of ``f``, every per-sample decision is a tensor mask, and the
solver steps are the same formulas on stacked histories, so the result equals
:func:`solve`'s with the same settings (which only skips evaluations that cannot change
it) up to rounding. Anderson's small per-sample system is solved by an unrolled
Cholesky factorization, since LAPACK's is no ONNX operator.
"""
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import anderson, broyden
from .fixed_point import FixedPointSolver
from .solve import REL_EPS, SolverConfig, _autocast_off
from .stats import SolverStats


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """``(B,)`` inner products of the rows of two ``(B, D)`` tensors."""
    return (a * b).sum(dim=1)


def _combine(coeffs: Tensor, rows: Tensor) -> Tensor:
    """``sum_i coeffs_i rows_i``: ``(B, n)`` weights of ``(B, n, D)`` rows, ``(B, D)``."""
    return torch.matmul(coeffs.unsqueeze(1), rows).squeeze(1)


def _products(x: Tensor, rows: Tensor) -> Tensor:
    """``(B, n)`` inner products of ``x`` with ``(B, n, D)`` rows."""
    return torch.matmul(rows, x.unsqueeze(2)).squeeze(2)


class _Broyden:
    """The steps of :class:`mdeq_mm.deq.BroydenSolver`, with the pairs kept in a list.

    The eager solver writes its pairs into preallocated buffers in place; an exporter
    cannot follow writes into views, so the pairs here are stacked at each step instead.
    """

    options = broyden.BroydenSolver.options

    def __init__(self, z0: Tensor, max_iter: int, memory: Optional[int] = None) -> None:
        self.memory = min(memory or broyden.DEFAULT_MEMORY, max_iter)
        self.us: List[Tensor] = []
        self.vs: List[Tensor] = []
        self.prev_g: Optional[Tensor] = None
        self.prev_bg: Optional[Tensor] = None
        self.degenerate = torch.zeros_like(z0[0, 0], dtype=torch.long)
        self._eps = torch.finfo(z0.dtype).eps

    def _apply(self, x: Tensor, rows: Sequence[Tensor], cols: Sequence[Tensor]) -> Tensor:
        """``(-I + sum_i r_i c_i^T) x``; ``B`` with rows ``us``, cols ``vs``, ``B^T`` swapped."""
        if not rows:
            return -x
        return _combine(_products(x, torch.stack(cols, dim=1)), torch.stack(rows, dim=1)) - x

    def propose(self, z: Tensor, fz: Tensor, g: Tensor, active: Tensor) -> Tensor:
        """Next iterate, as :meth:`mdeq_mm.deq.BroydenSolver.propose` gives it."""
        if self.prev_g is None:
            self.prev_g, self.prev_bg = g, -g
            return fz
        s = -self.prev_bg
        if len(self.us) == self.memory:
            self.us, self.vs = [], []
            self.prev_bg = -self.prev_g
        b_g = self._apply(g, self.us, self.vs)
        y = g - self.prev_g
        v = self._apply(s, self.vs, self.us)
        denom = _dot(v, y)
        ok = active & (denom.abs() > self._eps * v.norm(dim=1) * y.norm(dim=1))
        scale = torch.where(ok, 1.0 / torch.where(ok, denom, 1.0), 0.0).unsqueeze(1)
        u = (s - b_g + self.prev_bg) * scale
        v = v * ok.unsqueeze(1)
        self.us.append(u)
        self.vs.append(v)
        b_g = b_g + u * _dot(v, g).unsqueeze(1)
        self.degenerate = self.degenerate + (active & ~ok).sum()
        self.prev_g, self.prev_bg = g, b_g
        return z - b_g


class _Anderson:
    """The steps of :class:`mdeq_mm.deq.AndersonSolver`, with the history kept in a list.

    The ridged system is solved by an unrolled Cholesky factorization
    (:func:`_cholesky_solve_ones`): LAPACK's is no ONNX operator.
    """

    options = anderson.AndersonSolver.options

    def __init__(self, z0: Tensor, max_iter: int, memory: Optional[int] = None,
                 lam: float = 1e-4, beta: float = 1.0) -> None:
        self.memory = min(memory or anderson.DEFAULT_MEMORY, max_iter)
        self.lam = lam
        self.beta = beta
        self.fs: List[Tensor] = []
        self.gs: List[Tensor] = []
        self.count = 0
        self.degenerate = torch.zeros_like(z0[0, 0], dtype=torch.long)

    def propose(self, z: Tensor, fz: Tensor, g: Tensor, active: Tensor) -> Tensor:
        """Next iterate, as :meth:`mdeq_mm.deq.AndersonSolver.propose` gives it."""
        slot = self.count % self.memory
        if slot == len(self.fs):
            self.fs.append(fz)
            self.gs.append(g)
        else:
            self.fs[slot], self.gs[slot] = fz, g
        self.count += 1
        n = len(self.fs)
        fs, gs = torch.stack(self.fs, dim=1), torch.stack(self.gs, dim=1)
        gram = torch.matmul(gs, gs.transpose(1, 2)).to(torch.float64)
        eye = torch.eye(n, dtype=torch.float64, device=z.device)
        trace = (gram * eye).sum(dim=(1, 2))
        ridged = gram + eye * (trace * (self.lam / n)).view(-1, 1, 1)
        sol, ok = _cholesky_solve_ones(ridged)
        self.degenerate = self.degenerate + (active & ~ok).sum()
        alpha = torch.where(ok.view(-1, 1, 1), sol / sol.sum(dim=1, keepdim=True),
                            eye[:, slot:slot + 1]).transpose(1, 2).to(z.dtype)
        mixed_f = torch.matmul(alpha, fs).squeeze(1)
        if self.beta == 1.0:
            return mixed_f
        return mixed_f - (1.0 - self.beta) * torch.matmul(alpha, gs).squeeze(1)


def _cholesky_solve_ones(matrix: Tensor) -> Tuple[Tensor, Tensor]:
    """``(B, n, 1)`` solution of ``matrix x = 1`` per sample, and ``(B,)`` bool: factored.

    ``matrix`` is ``(B, n, n)``, symmetric; ``n`` is small (the Anderson memory), so the
    factorization unrolls into ``O(n^3)`` elementwise operations on ``(B,)`` tensors. A
    pivot that is not positive fails the sample, as ``torch.linalg.cholesky_ex`` reports it.
    """
    n = matrix.shape[-1]
    a = [[matrix[:, i, j] for j in range(n)] for i in range(n)]
    low: List[List[Tensor]] = [[] for _ in range(n)]  # low[i][k]: L_ik for k <= i
    ok = torch.ones_like(a[0][0], dtype=torch.bool)
    for j in range(n):
        pivot = a[j][j]
        for k in range(j):
            pivot = pivot - low[j][k] * low[j][k]
        ok = ok & (pivot > 0)
        root = torch.where(pivot > 0, pivot, 1.0).sqrt()
        low[j].append(root)
        for i in range(j + 1, n):
            entry = a[i][j]
            for k in range(j):
                entry = entry - low[i][k] * low[j][k]
            low[i].append(entry / root)
    y: List[Tensor] = []  # L y = 1
    for i in range(n):
        value = torch.ones_like(low[i][i])
        for k in range(i):
            value = value - low[i][k] * y[k]
        y.append(value / low[i][i])
    x: List[Tensor] = [y[0]] * n  # L^T x = y
    for i in reversed(range(n)):
        value = y[i]
        for k in range(i + 1, n):
            value = value - low[k][i] * x[k]
        x[i] = value / low[i][i]
    return torch.stack(x, dim=1).unsqueeze(2), ok


STEPS = {'anderson': _Anderson, 'broyden': _Broyden, 'fixed_point': FixedPointSolver}


class _MaskTracker:
    """Per-sample residuals, stopping and best iterate of a solve, kept as tensors only.

    The same rules as the tracker of :func:`mdeq_mm.deq.solve`, written without in-place
    writes into preallocated traces and without reading a mask on the host.
    """

    def __init__(self, z0: Tensor, cfg: SolverConfig) -> None:
        self.cfg = cfg
        self.best_z = z0.clone()
        self.abs_rows: List[Tensor] = []
        self.rel_rows: List[Tensor] = []
        self.improved_rows: List[Tensor] = []
        self.active = torch.ones_like(z0[:, 0], dtype=torch.bool)
        self.running_rows: List[Tensor] = [self.active]
        self.best: Optional[Tensor] = None
        self.limit: Optional[Tensor] = None
        self.best_history: List[Tensor] = []

    def record(self, step: int, z: Tensor, fz: Tensor, g: Tensor) -> None:
        """Book the residual ``g = fz - z`` of iterate ``step``."""
        abs_res = torch.linalg.vector_norm(g, dim=1)
        rel_res = abs_res / (torch.linalg.vector_norm(fz, dim=1) + REL_EPS)
        res = rel_res if self.cfg.stop_mode == 'rel' else abs_res
        if step == 0:
            improved = torch.ones_like(self.active)
            self.best = res
            self.limit = (abs_res * self.cfg.divergence_factor).clamp(
                max=torch.finfo(abs_res.dtype).max)
        else:
            improved = (res < self.best) & self.active
            self.best_z = torch.where(improved.unsqueeze(1), z, self.best_z)
            self.best = torch.where(improved, res, self.best)
        self.active = self.active & (abs_res <= self.limit) & (res >= self.cfg.tol)
        if self.cfg.stall_steps is not None:
            self.best_history.append(self.best)
            if step >= self.cfg.stall_steps:
                earlier = self.best_history.pop(0)
                self.active = self.active & (self.best <= self.cfg.stall_ratio * earlier)
        self.abs_rows.append(abs_res)
        self.rel_rows.append(rel_res)
        self.improved_rows.append(improved)
        self.running_rows.append(self.active)

    def stats(self, degenerate: Tensor) -> SolverStats:
        """The statistics of the solve, as :func:`mdeq_mm.deq.solve` reports them."""
        nfe = len(self.abs_rows)
        abs_trace, rel_trace = torch.stack(self.abs_rows), torch.stack(self.rel_rows)
        index = torch.arange(nfe, device=abs_trace.device).unsqueeze(1)
        best_step = torch.where(torch.stack(self.improved_rows), index, 0).amax(dim=0)
        steps = torch.stack(self.running_rows[:nfe]).sum(dim=0)
        last = (steps - 1).unsqueeze(0)
        abs_last = abs_trace.gather(0, last).squeeze(0)
        trace = rel_trace if self.cfg.stop_mode == 'rel' else abs_trace
        stopped = ~self.active
        finite = torch.isfinite(abs_last)
        nan = stopped & ~finite
        diverged = stopped & finite & (abs_last > self.limit)
        converged = trace.gather(0, last).squeeze(0) < self.cfg.tol
        return SolverStats(
            steps=steps,
            best_step=best_step,
            abs_res=abs_trace.gather(0, best_step.unsqueeze(0)).squeeze(0),
            rel_res=rel_trace.gather(0, best_step.unsqueeze(0)).squeeze(0),
            abs_trace=abs_trace,
            rel_trace=rel_trace,
            nan=nan,
            diverged=diverged,
            stalled=stopped & ~nan & ~diverged & ~converged,
            nfe=nfe,
            tol=self.cfg.tol,
            stop_mode=self.cfg.stop_mode,
            degenerate=degenerate)


def solve_fixed_budget(f: Callable[[Tensor], Tensor],
                       z0: Tensor,
                       solver: str = 'broyden',
                       max_iter: int = 30,
                       tol: float = 1e-3,
                       stop_mode: str = 'rel',
                       memory: Optional[int] = None,
                       tau: float = 1.0,
                       lam: float = 1e-4,
                       beta: float = 1.0,
                       check_every: int = 4,
                       divergence_factor: float = 1e3,
                       stall_steps: Optional[int] = None,
                       stall_ratio: float = 0.5) -> Tuple[Tensor, SolverStats]:
    """:func:`mdeq_mm.deq.solve` with exactly ``max_iter`` evaluations of ``f`` and no host sync.

    Takes the arguments of :func:`mdeq_mm.deq.solve` (``check_every`` is accepted and
    unused: there is no early exit to check for; there is no ``callback``). A sample that
    reaches ``tol``, stalls, diverges or meets NaN/Inf is frozen at its best iterate by a
    mask while the batch runs on, so the returned iterate and statistics equal
    :func:`solve`'s; the graph is the same for every input, which makes the solve
    traceable (``torch.jit.trace``, ``torch.onnx.export``) at a fixed cost.

    Args:
        f (Callable): Maps a ``(B, D)`` state to ``(B, D)``; must be traceable itself.
        z0 (Tensor): ``(B, D)`` initial state.
        solver (str): Name in :data:`mdeq_mm.deq.SOLVERS`. Default: 'broyden'.
        max_iter (int): Evaluations of ``f``, always all spent. Default: 30.
        tol, stop_mode, memory, tau, lam, beta, check_every, divergence_factor, stall_steps,
            stall_ratio: As in :func:`mdeq_mm.deq.solve`.

    Returns:
        tuple[Tensor, SolverStats]: The ``(B, D)`` lowest-residual iterate per sample and
        the statistics of the solve (``nfe == max_iter``).

    Example:
        >>> import torch
        >>> from mdeq_mm.deq import solve, solve_fixed_budget
        >>> a = 0.5 * torch.eye(3, dtype=torch.float64)
        >>> b, z0 = torch.ones(2, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64)
        >>> z, stats = solve_fixed_budget(lambda z: z @ a + b, z0, solver='anderson', max_iter=6,
        ...                               tol=0.0)
        >>> stats.nfe
        6
        >>> z_ref, _ = solve(lambda z: z @ a + b, z0, solver='anderson', max_iter=6, tol=0.0)
        >>> torch.allclose(z, z_ref)
        True
    """
    cfg = SolverConfig(type=solver, max_iter=max_iter, tol=tol, stop_mode=stop_mode,
                       memory=memory, tau=tau, lam=lam, beta=beta, check_every=check_every,
                       divergence_factor=divergence_factor, stall_steps=stall_steps,
                       stall_ratio=stall_ratio)
    if z0.dim() != 2:
        raise ValueError(f'solve_fixed_budget expects a flat (B, D) state, got shape '
                         f'{tuple(z0.shape)}')
    dtype = torch.float64 if z0.dtype == torch.float64 else torch.float32
    with torch.no_grad():
        return _run(f, z0.detach().to(dtype), cfg)


def _run(f: Callable[[Tensor], Tensor], z0: Tensor,
         cfg: SolverConfig) -> Tuple[Tensor, SolverStats]:
    solver_cls = STEPS[cfg.type]
    impl = solver_cls(z0, cfg.max_iter, **{k: getattr(cfg, k) for k in solver_cls.options})
    tracker = _MaskTracker(z0, cfg)
    no_autocast = _autocast_off(z0.device.type)
    z = z0
    for step in range(cfg.max_iter):
        fz = f(z).to(z.dtype)
        with no_autocast:
            g = fz - z
            tracker.record(step, z, fz, g)
            if step + 1 == cfg.max_iter:
                break
            proposal = impl.propose(z, fz, g, tracker.active)
            z = torch.where(tracker.active.unsqueeze(1), proposal, tracker.best_z)
    return tracker.best_z, tracker.stats(impl.degenerate)
