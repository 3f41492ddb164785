"""One entry point for fixed-point solves: :func:`solve`.

The loop, the per-sample residuals, stopping, best-iterate tracking and the
NaN/divergence guards live here once; a solver in :data:`SOLVERS` only turns
``(z, f(z))`` into the next iterate. A solver class provides ``options`` (the
:class:`SolverConfig` fields its constructor takes besides ``z0`` and
``max_iter``), a 0-dim long tensor ``degenerate`` and
``propose(z, fz, g, active) -> Tensor`` (``g = fz - z``, computed once by the loop). It may
provide ``residual(z, fz) -> Tensor`` to choose where that ``g`` is stored (e.g. straight
into its history); by default it is a new tensor.
"""
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, ContextManager, Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from .anderson import AndersonSolver
from .broyden import BroydenSolver
from .checks import check_choice, check_int, check_keys, check_number
from .fixed_point import FixedPointSolver
from .stats import SolverStats

SOLVERS: Dict[str, type] = {
    'anderson': AndersonSolver,
    'broyden': BroydenSolver,
    'fixed_point': FixedPointSolver,
}
STOP_MODES = ('abs', 'rel')
REL_EPS = 1e-9
# Errors passed on as raised (their type is what callers catch), a named solve adding a note
MEMORY_ERRORS = (MemoryError, torch.cuda.OutOfMemoryError)


class SolveError(RuntimeError):
    """An error raised during a named :func:`solve`, re-raised with the name in front.

    The name is the config key the solve answers to (a :class:`~mdeq_mm.deq.DEQCore` names its
    ``'forward_solver'``, ``'backward'`` and ``'fallback'`` solves); the original error is the
    ``__cause__``.
    """


@dataclass(frozen=True)
class SolverConfig:
    """Validated settings of one solve; fields match :func:`solve` arguments.

    Args:
        type (str): Solver name, a key of :data:`SOLVERS`. Default: 'broyden'.
        max_iter (int): Budget of ``f`` evaluations. Default: 30.
        tol (float): Per-sample stopping tolerance. Default: 1e-3.
        stop_mode (str): ``'rel'`` or ``'abs'`` residual. Default: 'rel'.
        memory (int, optional): Broyden pairs (default ``min(max_iter, 10)``) or
            Anderson history (default 5).
        tau (float): Fixed-point damping in ``(0, 1]``. Default: 1.0.
        lam (float): Anderson relative ridge. Default: 1e-4.
        beta (float): Anderson mixing. Default: 1.0.
        check_every (int): Steps between host syncs that test "all samples
            stopped" for an early exit. Larger values sync less but may waste
            up to ``check_every - 1`` batch evaluations after the last sample
            stopped; results do not change (stopped samples are frozen).
            Default: 4.
        divergence_factor (float): A sample is flagged ``diverged`` when its
            absolute residual exceeds this factor times its starting
            residual. Default: 1e3.
        stall_steps (int, optional): Stagnation rule: a sample stops, flagged
            ``stalled``, when its best residual (``stop_mode``) is still above
            ``stall_ratio`` times what it was ``stall_steps`` evaluations
            earlier, i.e. a solve that no longer gains that factor over that
            window spends no more of its budget. None (default) never stops
            on stagnation.
        stall_ratio (float): Reduction in ``(0, 1)`` the best residual must
            reach over ``stall_steps`` evaluations. Default: 0.5.
    """

    type: str = 'broyden'
    max_iter: int = 30
    tol: float = 1e-3
    stop_mode: str = 'rel'
    memory: Optional[int] = None
    tau: float = 1.0
    lam: float = 1e-4
    beta: float = 1.0
    check_every: int = 4
    divergence_factor: float = 1e3
    stall_steps: Optional[int] = None
    stall_ratio: float = 0.5

    def __post_init__(self) -> None:
        if self.type not in SOLVERS:
            raise ValueError(f'unknown solver {self.type!r}; valid names: {sorted(SOLVERS)}')
        check_int('max_iter', self.max_iter, 1)
        check_number('tol', self.tol, 0.0, low_inclusive=True)
        check_choice('stop_mode', self.stop_mode, STOP_MODES)
        if self.memory is not None:
            check_int('memory', self.memory, 1)
        check_number('tau', self.tau, 0.0, 1.0)
        check_number('lam', self.lam, 0.0)
        check_number('beta', self.beta, 0.0)
        check_int('check_every', self.check_every, 1)
        check_number('divergence_factor', self.divergence_factor, 1.0)
        if self.stall_steps is not None:
            check_int('stall_steps', self.stall_steps, 1)
        check_number('stall_ratio', self.stall_ratio, 0.0)
        if self.stall_ratio >= 1.0:
            raise ValueError(f'stall_ratio must be in (0, 1), got {self.stall_ratio!r}')

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> 'SolverConfig':
        """Build from a config dict, naming any unknown key in the error."""
        check_keys(cfg, (f.name for f in fields(cls)), 'solver config')
        return cls(**cfg)

    def solve_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments of :func:`solve` for these settings."""
        kwargs = asdict(self)
        kwargs['solver'] = kwargs.pop('type')
        return kwargs


def pick_rows(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Per sample ``a if mask else b`` for ``(B, D)`` tensors, exactly; may return ``a`` or ``b``.

    On CPU ``torch.where`` runs a scalar loop, several times slower than copying the same
    bytes, and reading the mask costs no device sync: there whole rows are copied (nothing
    when all or no samples take ``a``). Elsewhere it is one ``torch.where``.
    """
    if a.device.type != 'cpu':
        return torch.where(mask.unsqueeze(1), a, b)
    take = mask.tolist()
    if all(take):
        return a
    if not any(take):
        return b
    out = b.clone()
    for row, use_a in enumerate(take):
        if use_a:
            out[row] = a[row]
    return out


@dataclass
class SolverState:
    """What a ``callback`` sees after each evaluation of ``f``.

    Args:
        step (int): Evaluations of ``f`` so far.
        abs_res (Tensor): ``(B,)`` absolute residual of the current iterate.
        rel_res (Tensor): ``(B,)`` relative residual of the current iterate.
        active (Tensor): ``(B,)`` bool, samples still iterating.
    """

    step: int
    abs_res: Tensor
    rel_res: Tensor
    active: Tensor


class _Tracker:
    """Per-sample residuals, stopping and best iterate of one solve.

    A step costs a few small batched operations: the residual norms are written straight
    into the traces, a step only records which samples improved, and the flags, best step
    and best residuals are read off the traces once, in :meth:`stats`.
    """

    def __init__(self, z0: Tensor, cfg: SolverConfig) -> None:
        batch = z0.shape[0]
        self.cfg = cfg
        self.best_z = z0.clone()
        self.abs_trace = z0.new_empty(cfg.max_iter, batch)
        self.rel_trace = z0.new_empty(cfg.max_iter, batch)
        # improved[t]: iterate t became the sample's best (all samples at t = 0);
        # running[t]: the sample was still iterating when iterate t was evaluated
        self.improved = torch.empty_like(self.abs_trace, dtype=torch.bool)
        self.running = torch.ones(cfg.max_iter + 1, batch, dtype=torch.bool, device=z0.device)
        self.active = self.running[0]
        self._rows = tuple(zip(self.abs_trace.unbind(0), self.rel_trace.unbind(0),
                               self.improved.unbind(0), self.running[1:].unbind(0)))
        self.tol = z0.new_tensor(cfg.tol)
        self.best: Optional[Tensor] = None  # best residual (stop_mode) so far
        self.limit: Optional[Tensor] = None  # divergence threshold on the absolute residual
        # best residual after each of the last stall_steps + 1 evaluations
        self.best_history: List[Tensor] = []

    def record(self, step: int, z: Tensor, fz: Tensor, g: Tensor) -> Tuple[Tensor, Tensor]:
        """Book the residual ``g = fz - z`` of iterate ``step`` and update the per-sample state."""
        abs_row, rel_row, improved, running = self._rows[step]
        abs_res = torch.linalg.vector_norm(g, dim=1, out=abs_row)
        f_norm = torch.linalg.vector_norm(fz, dim=1).add_(REL_EPS)
        rel_res = torch.div(abs_res, f_norm, out=rel_row)
        res = rel_res if self.cfg.stop_mode == 'rel' else abs_res
        if step == 0:
            improved.fill_(1)  # a bool fill_ cannot be traced (torch.jit)
            self.best = res
            # capped so that an infinite residual exceeds it (NaN fails every comparison)
            self.limit = (abs_res * self.cfg.divergence_factor).clamp_(
                max=torch.finfo(abs_res.dtype).max)
        else:
            # a NaN/Inf in z or f(z) makes the residuals NaN/Inf: never an improvement
            torch.logical_and(res < self.best, self.active, out=improved)
            # best_z starts as a copy of z0, which may be the caller's tensor
            self.best_z = pick_rows(improved, z, self.best_z)
            self.best = torch.where(improved, res, self.best)
        # a sample stops on NaN/Inf or divergence (both fail abs_res <= limit) or at tol
        self.active = torch.logical_and(self.active & (abs_res <= self.limit),
                                        res >= self.tol, out=running)
        if self.cfg.stall_steps is not None:
            self._check_stall(step)
        return abs_res, rel_res

    def _check_stall(self, step: int) -> None:
        """Stop samples whose best residual fell by less than ``stall_ratio`` in ``stall_steps``."""
        self.best_history.append(self.best)
        if step < self.cfg.stall_steps:
            return
        earlier = self.best_history.pop(0)
        self.active &= self.best <= self.cfg.stall_ratio * earlier

    def stats(self, nfe: int, degenerate: Tensor) -> SolverStats:
        """The statistics after ``nfe`` evaluations; the reason each sample stopped is read
        off the residuals of the last evaluation it took part in."""
        abs_trace, rel_trace = self.abs_trace[:nfe], self.rel_trace[:nfe]
        index = torch.arange(nfe, device=abs_trace.device).unsqueeze(1)
        best_step = torch.where(self.improved[:nfe], index, 0).amax(dim=0)
        steps = self.running[:nfe].sum(dim=0)
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


def solve(f: Callable[[Tensor], Tensor],
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
          stall_ratio: float = 0.5,
          callback: Optional[Callable[[SolverState], Optional[bool]]] = None,
          name: Optional[str] = None) -> Tuple[Tensor, SolverStats]:
    """Find ``z* = f(z*)`` per sample and return the lowest-residual iterate.

    Each sample stops on its own when its residual (``stop_mode``) drops
    below ``tol``, or when ``f`` gives NaN/Inf, or when it diverges; a stopped
    sample is frozen at its best iterate, so its result does not depend on the
    rest of the batch. ``f`` is still evaluated on the whole batch and must
    treat samples independently. The solver state and all inner products are
    kept in float32 (float64 if ``z0`` is float64) with autocast disabled;
    ``f`` runs under the caller's autocast and its output is cast back. Runs
    without autograd. Iterates may be kept without a copy, so ``f`` must
    return a new tensor, not a buffer that it overwrites at its next call.

    Args:
        f (Callable): Maps a ``(B, D)`` state to ``(B, D)``.
        z0 (Tensor): ``(B, D)`` initial state.
        solver (str): Name in :data:`SOLVERS`. Default: 'broyden'.
        max_iter (int): Budget of ``f`` evaluations (``z0`` counts as the
            first one). Default: 30.
        tol (float): Per-sample tolerance. Default: 1e-3.
        stop_mode (str): ``'rel'``: ``||f(z)-z|| / ||f(z)||``, ``'abs'``:
            ``||f(z)-z||``. Default: 'rel'.
        memory (int, optional): Broyden/Anderson history length.
        tau (float): Fixed-point damping. Default: 1.0.
        lam (float): Anderson relative ridge. Default: 1e-4.
        beta (float): Anderson mixing. Default: 1.0.
        check_every (int): Steps between "all stopped" host syncs.
            Default: 4.
        divergence_factor (float): Residual growth that flags divergence.
            Default: 1e3.
        stall_steps (int, optional): Stop a sample whose best residual did
            not fall below ``stall_ratio`` times its value ``stall_steps``
            evaluations earlier (see :class:`SolverConfig`). Default: None.
        stall_ratio (float): See ``stall_steps``. Default: 0.5.
        callback (Callable, optional): Called with a :class:`SolverState`
            after every evaluation; returning True stops the solve.
        name (str, optional): The config key this solve answers to, e.g.
            ``'backward'``: an error raised by ``f`` or the solver is re-raised
            as :class:`SolveError` naming it (memory errors keep their type and
            get a note where Python has ``add_note``). Default: None (errors
            pass as raised).

    Returns:
        tuple[Tensor, SolverStats]: The ``(B, D)`` lowest-residual iterate
        per sample and the statistics of the solve.

    Raises:
        SolveError: With ``name``, what ``f`` or the solver raised.

    Example:
        >>> def f(z):
        ...     raise ValueError('bad input')
        >>> solve(f, torch.zeros(2, 3), max_iter=4, name='backward')
        Traceback (most recent call last):
            ...
        mdeq_mm.deq.solve.SolveError: backward (broyden solver, max_iter=4): ValueError: bad input
    """
    cfg = SolverConfig(type=solver, max_iter=max_iter, tol=tol, stop_mode=stop_mode,
                       memory=memory, tau=tau, lam=lam, beta=beta, check_every=check_every,
                       divergence_factor=divergence_factor, stall_steps=stall_steps,
                       stall_ratio=stall_ratio)
    if z0.dim() != 2:
        raise ValueError(f'solve expects a flat (B, D) state, got shape {tuple(z0.shape)}')
    dtype = torch.float64 if z0.dtype == torch.float64 else torch.float32
    try:
        with torch.no_grad():
            return _run(f, z0.detach().to(dtype), cfg, callback)
    except Exception as err:  # noqa: B902  (named and re-raised)
        if name is None:
            raise
        where = f'{name} ({cfg.type} solver, max_iter={cfg.max_iter})'
        if isinstance(err, MEMORY_ERRORS):
            if hasattr(err, 'add_note'):
                err.add_note(f'raised during the {where} solve')
            raise
        raise SolveError(f'{where}: {type(err).__name__}: {err}') from err
    finally:
        # Casts that autocast cached while f ran here carry no autograd history; older torch
        # (2.1) reuses them in the caller's later differentiable calls, whose weights then get
        # no gradient. Dropping them costs one re-cast.
        torch.clear_autocast_cache()


def _residual(z: Tensor, fz: Tensor) -> Tensor:
    return fz - z


def _autocast_off(device_type: str) -> ContextManager:
    """A reusable context that keeps the caller's autocast away from the solver's arithmetic."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type here
        enabled = True
    return torch.autocast(device_type, enabled=False) if enabled else nullcontext()


def _run(f: Callable[[Tensor], Tensor], z0: Tensor, cfg: SolverConfig,
         callback: Optional[Callable[[SolverState], Optional[bool]]]
         ) -> Tuple[Tensor, SolverStats]:
    solver_cls = SOLVERS[cfg.type]
    impl = solver_cls(z0, cfg.max_iter, **{k: getattr(cfg, k) for k in solver_cls.options})
    tracker = _Tracker(z0, cfg)
    residual = getattr(impl, 'residual', _residual)
    no_autocast = _autocast_off(z0.device.type)
    z = z0
    nfe = 0
    for step in range(cfg.max_iter):
        fz = f(z)
        if fz.shape != z.shape:
            raise ValueError(f'f must keep the state shape {tuple(z.shape)}, '
                             f'returned {tuple(fz.shape)}')
        if fz.dtype != z.dtype:
            fz = fz.to(z.dtype)
        nfe += 1
        with no_autocast:
            g = residual(z, fz)
            abs_res, rel_res = tracker.record(step, z, fz, g)
            if callback is not None and callback(
                    SolverState(nfe, abs_res, rel_res, tracker.active)):
                break
            if nfe == cfg.max_iter:
                break
            if nfe % cfg.check_every == 0 and not bool(tracker.active.any()):
                break
            proposal = impl.propose(z, fz, g, tracker.active)
            z = pick_rows(tracker.active, proposal, tracker.best_z)
    return tracker.best_z, tracker.stats(nfe, impl.degenerate)
