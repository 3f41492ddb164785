"""The DEQ core: equilibrium forward, implicit or phantom backward, fallbacks.

:class:`DEQCore` turns a weight-tied map ``f`` on a tuple of tensors into a
layer whose output is its fixed point. The backbone builds ``f`` (closing over
the input injection and parameters) and calls the core once per forward.
"""
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .capture import Capture, CapturingMap
from .checks import check_choice, check_int, check_keys, check_number
from .fixed_budget import solve_fixed_budget
from .jacobian import jacobian_frobenius_reg
from .solve import SolverConfig, SolverState, solve
from .state import StatePacker
from .stats import SolverStats

StateFn = Callable[[Tuple[Tensor, ...]], Sequence[Tensor]]
FlatFn = Callable[[Tensor], Tensor]

DEQ_MODES = ('equilibrium', 'unrolled')
BACKWARD_TYPES = ('implicit', 'phantom')
# Names a backward config dict may give as its type: 'jfb' (Jacobian-free backprop, Fung et al.
# 2022) is the phantom gradient with one undamped step.
JFB = dict(type='phantom', k=1, tau=1.0)
BACKWARD_NAMES = BACKWARD_TYPES + ('jfb', )
BACKWARD_ON_FAIL = ('phantom', 'detach', 'accept')
FALLBACK_TYPES = ('fixed_point', 'unrolled', 'phantom', 'detach')
PHANTOM_KEYS = ('k', 'tau')
# An implicit backward names the settings of its phantom fallback apart from its solver's.
IMPLICIT_PHANTOM_KEYS = {'phantom_k': 'k', 'phantom_tau': 'tau'}
# Earlier spellings, still accepted with a FutureWarning: 'detach' was 'zero' in on_fail and
# 'skip' as a fallback type; an implicit backward's phantom_k / phantom_tau were k / tau.
DEPRECATED_ON_FAIL = {'zero': 'detach'}
DEPRECATED_FALLBACK_TYPES = {'skip': 'detach'}
DEPRECATED_IMPLICIT_KEYS = {'k': 'phantom_k', 'tau': 'phantom_tau'}
# The implicit backward stops a sample whose best residual has not halved over this many
# VJPs (SolverConfig.stall_steps): at a trained state the backward residual falls 2-3x per
# VJP, and a solve that stalls (e.g. at random initialization) would otherwise spend its
# whole budget before the fallback runs.
BACKWARD_STALL_STEPS = 5
# The implicit backward tests for "all samples stopped" after every VJP: the host sync costs
# microseconds, a VJP milliseconds, so a stalled solve wastes no VJP after its stop.
BACKWARD_CHECK_EVERY = 1
# SolverConfig fields an implicit backward accepts; 'solver' names the type. 'tau' is not one:
# the linear solve is undamped.
BACKWARD_SOLVER_KEYS = ('solver', 'max_iter', 'tol', 'stop_mode', 'memory', 'lam', 'beta',
                        'check_every', 'divergence_factor', 'stall_steps', 'stall_ratio')
FALLBACK_KEYS = {
    'fixed_point': ('tau', 'max_iter'),
    'phantom': PHANTOM_KEYS,
    'unrolled': (),
    'detach': (),
}


def _renamed(name: str, value: Any, renames: Mapping[Any, Any]) -> Any:
    """``value``, or its new spelling with a FutureWarning if it is a deprecated one."""
    if isinstance(value, str) and value in renames:
        warnings.warn(f'{name} {value!r} is deprecated; use {renames[value]!r}', FutureWarning)
        return renames[value]
    return value


def _check_phantom(k: int, tau: float) -> None:
    check_int('k', k, 1)
    check_number('tau', tau, 0.0, 1.0)


@dataclass(frozen=True)
class BackwardConfig:
    """Validated gradient settings of the equilibrium mode.

    ``type='implicit'``: exact implicit-function-theorem gradient, a linear
    fixed-point solve with its own ``solver`` settings; ``on_fail`` says what
    to do for samples whose solve misses ``tol``: ``'phantom'`` (``k - 1``
    damped phantom steps with ``tau``, written ``phantom_k``/``phantom_tau``
    in the config dict, continued from the solve's best iterate), ``'detach'``
    (no gradient from them) or ``'accept'`` (use the best iterate anyway). The
    linear solve stops a stalled sample early (``stall_steps``, default
    ``BACKWARD_STALL_STEPS``; None spends the whole budget), so the fallback
    does not wait for a hopeless solve; it tests for its early exit after
    every VJP (``check_every``, default ``BACKWARD_CHECK_EVERY``). A
    ``solver='fixed_point'`` linear solve is undamped.
    ``type='phantom'``: ``k`` damped unrolled steps from the detached fixed
    point, ``z <- tau f(z) + (1 - tau) z`` (``k=1, tau=1``: Jacobian-free).

    Build it with :meth:`from_dict`, e.g.
    ``dict(type='implicit', solver='broyden', max_iter=30, tol=1e-4,
    stop_mode='rel', on_fail='phantom', phantom_k=5, phantom_tau=0.6)``,
    ``dict(type='phantom', k=5, tau=0.6)`` or ``dict(type='jfb')`` (the
    Jacobian-free gradient, short for ``dict(type='phantom', k=1, tau=1.0)``).
    Deprecated spellings, accepted with a FutureWarning: ``on_fail='zero'``
    (now ``'detach'``) and ``k`` / ``tau`` in an implicit config (now
    ``phantom_k`` / ``phantom_tau``).

    Args:
        type (str): ``'implicit'`` or ``'phantom'``. Default: 'implicit'.
        solver (SolverConfig): Linear-solve settings (implicit only).
        on_fail (str): Policy for unconverged samples (implicit only).
            Default: 'phantom'.
        k (int): Phantom steps (``phantom_k`` in an implicit config dict).
            Default: 5.
        tau (float): Phantom damping in ``(0, 1]`` (``phantom_tau`` in an
            implicit config dict). Default: 0.6.
    """

    type: str = 'implicit'
    solver: SolverConfig = field(
        default_factory=lambda: SolverConfig(stall_steps=BACKWARD_STALL_STEPS,
                                             check_every=BACKWARD_CHECK_EVERY))
    on_fail: str = 'phantom'
    k: int = 5
    tau: float = 0.6

    def __post_init__(self) -> None:
        check_choice('backward type', self.type, BACKWARD_TYPES)
        object.__setattr__(self, 'on_fail', _renamed('on_fail', self.on_fail, DEPRECATED_ON_FAIL))
        check_choice('on_fail', self.on_fail, BACKWARD_ON_FAIL)
        _check_phantom(self.k, self.tau)
        if not isinstance(self.solver, SolverConfig):
            raise ValueError(f'solver must be a SolverConfig, got {type(self.solver).__name__}')

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> 'BackwardConfig':
        """Build from a flat config dict; unknown or inapplicable keys raise."""
        cfg = dict(cfg)
        kind = cfg.pop('type', 'implicit')
        check_choice('backward type', kind, BACKWARD_NAMES)
        if kind == 'jfb':
            check_keys(cfg, (), "backward config (type='jfb')")
            return cls(**JFB)
        if kind == 'phantom':
            check_keys(cfg, PHANTOM_KEYS, "backward config (type='phantom')")
            return cls(type=kind, **cfg)
        what = "backward config (type='implicit')"
        check_keys(cfg, BACKWARD_SOLVER_KEYS + tuple(IMPLICIT_PHANTOM_KEYS) +
                   tuple(DEPRECATED_IMPLICIT_KEYS) + ('on_fail', ), what)
        for old, new in DEPRECATED_IMPLICIT_KEYS.items():
            if old in cfg:
                if new in cfg:
                    raise ValueError(f'{what} gives both {new} and its deprecated name {old}')
                warnings.warn(f'{old} in an implicit backward config is deprecated; it sets the '
                              f'phantom fallback: use {new}', FutureWarning)
                cfg[new] = cfg.pop(old)
        solver = {('type' if key == 'solver' else key): cfg.pop(key)
                  for key in BACKWARD_SOLVER_KEYS if key in cfg}
        solver.setdefault('stall_steps', BACKWARD_STALL_STEPS)
        solver.setdefault('check_every', BACKWARD_CHECK_EVERY)
        phantom = {field: cfg.pop(key) for key, field in IMPLICIT_PHANTOM_KEYS.items()
                   if key in cfg}
        return cls(type=kind, solver=SolverConfig(**solver), **phantom, **cfg)


@dataclass(frozen=True)
class FallbackConfig:
    """Validated policy for samples whose forward solve hit NaN/Inf or diverged.

    Types: ``'fixed_point'`` re-solves them with damped fixed-point iteration
    (``tau``; ``max_iter`` defaults to the forward budget) starting from their
    best iterate; ``'unrolled'`` gives them the output of ``n_layers``
    unrolled steps from ``z0``; ``'phantom'`` gives them the phantom output
    (``k``, ``tau``) from their best iterate; ``'detach'`` gives them their best
    iterate, detached (no gradient; ``'skip'`` is its deprecated name). In eval
    ``'phantom'`` and ``'detach'`` both return the best iterate.

    Args:
        type (str): One of the types above. Default: 'fixed_point'.
        tau (float): Damping for 'fixed_point' and 'phantom'. Default: 0.5.
        k (int): Steps for 'phantom'. Default: 5.
        max_iter (int, optional): Budget for 'fixed_point'.
    """

    type: str = 'fixed_point'
    tau: float = 0.5
    k: int = 5
    max_iter: Optional[int] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, 'type',
                           _renamed('fallback type', self.type, DEPRECATED_FALLBACK_TYPES))
        check_choice('fallback type', self.type, FALLBACK_TYPES)
        _check_phantom(self.k, self.tau)
        if self.max_iter is not None:
            check_int('max_iter', self.max_iter, 1)

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> 'FallbackConfig':
        """Build from a config dict; unknown or inapplicable keys raise."""
        cfg = dict(cfg)
        kind = _renamed('fallback type', cfg.pop('type', 'fixed_point'),
                        DEPRECATED_FALLBACK_TYPES)
        check_choice('fallback type', kind, FALLBACK_TYPES)
        check_keys(cfg, FALLBACK_KEYS[kind], f'fallback config (type={kind!r})')
        return cls(type=kind, **cfg)


@dataclass(frozen=True)
class TrajectoryConfig:
    """Validated settings of the trajectory a training solve returns besides its output.

    ``n_states`` iterates of the forward solve, at evaluations evenly spaced over its budget
    (:meth:`sample_steps`), are each re-attached to the graph by ``k`` damped steps
    ``z <- tau f(z) + (1 - tau) z`` from the detached iterate (an inexact gradient, like the
    phantom backward; ``k=1, tau=1`` is Jacobian-free). A solve that stops before a sampled
    evaluation gives its final iterate there, so every call, and every process of a
    distributed run, returns the same number of states. Used for fixed-point correction
    (Bai et al., 2022): the task loss is also applied to these states.

    Args:
        n_states (int): Sampled states; 0 samples none. Default: 0.
        k (int): Differentiable steps of ``f`` per state. Default: 1.
        tau (float): Damping of those steps, in ``(0, 1]``. Default: 1.0.

    Example:
        >>> TrajectoryConfig(n_states=2).sample_steps(12)
        (4, 8)
    """

    n_states: int = 0
    k: int = 1
    tau: float = 1.0

    def __post_init__(self) -> None:
        check_int('n_states', self.n_states, 0)
        _check_phantom(self.k, self.tau)

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> 'TrajectoryConfig':
        """Build from a config dict; unknown keys raise."""
        check_keys(cfg, ('n_states', 'k', 'tau'), 'trajectory config')
        return cls(**cfg)

    def sample_steps(self, budget: int) -> Tuple[int, ...]:
        """The forward evaluations (0 is ``z0``, which is never sampled) whose iterates are
        sampled by a solve with ``budget`` evaluations."""
        n = self.n_states
        return tuple(max(1, (i * budget) // (n + 1)) for i in range(1, n + 1))


def _build(cfg: Any, cls: type) -> Any:
    """``cls`` instance from None (defaults), a dict or an instance."""
    if cfg is None:
        return cls()
    if isinstance(cfg, cls):
        return cfg
    if isinstance(cfg, Mapping):
        return cls.from_dict(cfg)
    raise ValueError(f'expected a dict or {cls.__name__}, got {type(cfg).__name__}')


def _select(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Per-sample ``a if mask else b`` for ``(B, D)`` tensors."""
    return torch.where(mask.unsqueeze(1), a, b)


class _ImplicitGrad(torch.autograd.Function):
    """Identity on ``f(z*)`` whose backward solves ``g = g J_f(z*) + grad``.

    The returned ``g`` continues through the single differentiable call
    ``f(z*)`` to the parameters and the injection. The solve only asks
    autograd for gradients w.r.t. ``z*``, so no parameter gradient is
    accumulated (safe with DDP), and nothing is registered on tensors.
    """

    @staticmethod
    def forward(ctx: Any, core: 'DEQCore', z_in: Tensor, fz: Tensor) -> Tensor:
        ctx.core = core
        ctx.save_for_backward(z_in, fz)
        return fz.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[None, None, Tensor]:
        z_in, fz = ctx.saved_tensors
        return None, None, ctx.core._implicit_grad(z_in, fz, grad)


class DEQCore(nn.Module):
    """Deep-equilibrium core: solves ``z* = f(z*)`` and differentiates through it.

    Modes of :meth:`forward`:

    - ``'unrolled'``: ``n_layers`` applications of ``f`` from ``z0`` with
      ordinary autograd (weight-tied warm-up).
    - ``'equilibrium'``: the forward solver finds ``z*`` without autograd. In
      training with grad enabled the output is ``f(z*)`` with the implicit
      gradient, or the phantom output (see :class:`BackwardConfig`); otherwise
      it is ``z*``, the lowest-residual iterate. With the attribute ``eval_fixed_budget``
      set, evaluation runs :func:`mdeq_mm.deq.solve_fixed_budget` instead: always the
      whole budget, no host sync and no fallback, so the forward traces into a static
      graph (ONNX export) with the same result as long as no sample fails.

    Readable after a call: ``last_forward_stats`` (None in unrolled mode),
    ``last_fallback_stats`` (the 'fixed_point' re-solve, if one ran; the
    returned iterate of flagged samples comes from it), ``last_jacobian_loss``
    (when ``jacobian_probes > 0`` in training); after ``backward()``:
    ``last_backward_stats`` and ``last_backward_vjps`` (VJPs of the linear
    solve plus its phantom fallback; implicit type only; cleared by every call).
    ``fallback_counts`` counts
    events per call: ``'forward'`` (some sample hit NaN/Inf or diverged),
    ``'backward'`` (some sample missed the backward tolerance; counted for
    every ``on_fail`` policy) and ``'nonfinite'`` (the output still had
    NaN/Inf and those samples were replaced by their best iterate, with a
    warning). ``fallback_count`` is their sum. One host sync per forward
    decides whether a fallback is needed.

    With ``trajectory_cfg`` giving ``n_states > 0``, a training equilibrium forward with grad
    also stores ``last_trajectory``: ``n_states`` states sampled along the forward solve, each
    with an inexact gradient (see :class:`TrajectoryConfig`), earliest first; it is None after
    any other call. ``train_max_iter`` (None: ``forward_cfg.max_iter``) is the forward budget
    of training calls that give none, e.g. drawn per iteration by a hook.

    Args:
        forward_cfg (dict | SolverConfig, optional): Forward solver, e.g.
            ``dict(type='broyden', max_iter=26, tol=1e-3)``.
        backward_cfg (dict | BackwardConfig, optional): Gradient settings.
        fallback_cfg (dict | FallbackConfig, optional): Forward failure
            policy, e.g. ``dict(type='fixed_point', tau=0.5)``.
        n_layers (int): Steps of the unrolled mode. Default: 5.
        trajectory_cfg (dict | TrajectoryConfig, optional): States to sample along a
            training solve, e.g. ``dict(n_states=2, k=1, tau=1.0)``. Default: none.

    Example:
        >>> core = DEQCore(dict(type='broyden', max_iter=30, tol=1e-6),
        ...                dict(type='implicit', max_iter=30, tol=1e-6))
        >>> w = torch.nn.Parameter(0.1 * torch.randn(4, 4))
        >>> x = torch.randn(2, 4)
        >>> (z, ) = core(lambda zs: (torch.tanh(zs[0] @ w + x), ), (torch.zeros(2, 4), ))
        >>> z.sum().backward()
        >>> core.last_backward_stats.steps.shape
        torch.Size([2])
        >>> core.trajectory_cfg = TrajectoryConfig(n_states=2)
        >>> (z, ) = core(lambda zs: (torch.tanh(zs[0] @ w + x), ), (torch.zeros(2, 4), ))
        >>> [state[0].requires_grad for state in core.last_trajectory]
        [True, True]
    """

    def __init__(self,
                 forward_cfg: Union[Mapping[str, Any], SolverConfig, None] = None,
                 backward_cfg: Union[Mapping[str, Any], BackwardConfig, None] = None,
                 fallback_cfg: Union[Mapping[str, Any], FallbackConfig, None] = None,
                 n_layers: int = 5,
                 trajectory_cfg: Union[Mapping[str, Any], TrajectoryConfig, None] = None
                 ) -> None:
        super().__init__()
        self.forward_cfg: SolverConfig = _build(forward_cfg, SolverConfig)
        self.backward_cfg: BackwardConfig = _build(backward_cfg, BackwardConfig)
        self.fallback_cfg: FallbackConfig = _build(fallback_cfg, FallbackConfig)
        check_int('n_layers', n_layers, 1)
        self.n_layers = n_layers
        self.trajectory_cfg: TrajectoryConfig = _build(trajectory_cfg, TrajectoryConfig)
        self.eval_max_iter: Optional[int] = None
        self.train_max_iter: Optional[int] = None
        self.last_trajectory: Optional[Tuple[Tuple[Tensor, ...], ...]] = None
        self.eval_fixed_budget = False
        self.last_forward_stats: Optional[SolverStats] = None
        self.last_fallback_stats: Optional[SolverStats] = None
        self.last_backward_stats: Optional[SolverStats] = None
        self.last_backward_vjps: Optional[int] = None
        self.last_jacobian_loss: Optional[Tensor] = None
        self.fallback_counts: Dict[str, int] = {'forward': 0, 'backward': 0, 'nonfinite': 0}

    @property
    def fallback_count(self) -> int:
        """Total fallback events since construction."""
        return sum(self.fallback_counts.values())

    def forward(self,
                f: StateFn,
                z0: Sequence[Tensor],
                mode: str = 'equilibrium',
                max_iter: Optional[int] = None,
                jacobian_probes: int = 0,
                callback: Optional[Callable[[SolverState], Optional[bool]]] = None
                ) -> Tuple[Tensor, ...]:
        """Run the DEQ layer.

        Args:
            f (Callable): Maps a tuple of ``(B, ...)`` tensors to a tuple (or
                list) of the same shapes; samples must be independent.
            z0 (Sequence[Tensor]): Initial state.
            mode (str): ``'equilibrium'`` or ``'unrolled'``.
                Default: 'equilibrium'.
            max_iter (int, optional): Forward budget for this call; otherwise
                ``eval_max_iter`` in eval (if set), else ``forward_cfg.max_iter``.
            jacobian_probes (int): If > 0 and training with grad, store a Hutchinson
                estimate of ``||J_f||_F^2 / numel`` in ``last_jacobian_loss``.
            callback (Callable, optional): Passed to the forward :func:`solve` (not to a
                fallback re-solve): sees every step and may stop the solve early.

        Returns:
            tuple[Tensor]: The output state, float32 (float64 if ``z0`` is).
        """
        check_choice('mode', mode, DEQ_MODES)
        check_int('jacobian_probes', jacobian_probes, 0)
        if max_iter is not None:
            check_int('max_iter', max_iter, 1)
        packer = StatePacker(z0)
        z0_flat = packer.pack(z0)
        dtype = torch.float64 if z0_flat.dtype == torch.float64 else torch.float32
        z0_flat = z0_flat.to(dtype)

        def flat_f(z: Tensor) -> Tensor:
            return packer.pack(f(packer.unpack(z))).to(dtype)

        differentiable = self.training and torch.is_grad_enabled()
        probes = jacobian_probes if differentiable else 0
        self.last_jacobian_loss = None
        self.last_forward_stats = None
        self.last_backward_stats = None
        self.last_backward_vjps = None
        self.last_fallback_stats = None
        self.last_trajectory = None
        if mode == 'unrolled':
            return packer.unpack(self._iterate(flat_f, z0_flat, self.n_layers, 1.0, probes))
        if self.eval_fixed_budget and not self.training:
            return packer.unpack(self._solve_fixed_budget(flat_f, z0_flat, max_iter, callback))

        budget = self._forward_budget(max_iter)
        sample_steps = self.trajectory_cfg.sample_steps(budget) if differentiable else ()
        # a training solve keeps the evaluations its differentiable steps start from
        captured = CapturingMap(flat_f, sample_steps, self._end_steps(budget),
                                self._output_needs_input_grad(probes)) if differentiable else None
        z_star, bad = self._solve_forward(flat_f, z0_flat, budget, callback, captured)
        fb = self.fallback_cfg
        if not differentiable:
            out = z_star
            if bad is not None and fb.type == 'unrolled':
                out = _select(bad, self._iterate(flat_f, z0_flat, self.n_layers, 1.0, 0), out)
            return packer.unpack(self._guard(out, z_star))

        first = None if bad is not None else captured.end_at(z_star,
                                                             self.last_forward_stats.nfe)
        out = self._train_output(flat_f, z_star, probes, first)
        if bad is not None:
            if fb.type == 'phantom':
                out = _select(bad, self._iterate(flat_f, z_star, fb.k, fb.tau, 0), out)
            elif fb.type == 'unrolled':
                out = _select(bad, self._iterate(flat_f, z0_flat, self.n_layers, 1.0, 0), out)
            elif fb.type == 'detach':
                out = _select(bad, z_star, out)
        if sample_steps:
            starts = [captured.samples[step] for step in sample_steps]
            self.last_trajectory = tuple(
                packer.unpack(state)
                for state in self._trajectory(flat_f, starts, z_star, bad, first))
        return packer.unpack(self._guard(out, z_star))

    def _output_needs_input_grad(self, probes: int) -> bool:
        """Whether the training output's first ``f`` step needs the gradient w.r.t. its input:
        the implicit backward's, or a Jacobian penalty taken at that step."""
        bwd = self.backward_cfg
        return bwd.type == 'implicit' or (probes > 0 and bwd.k == 1)

    def _end_steps(self, budget: int) -> Tuple[int, ...]:
        """The evaluations after which a forward solve of ``budget`` may stop without a
        callback: where it checks for its early exit, and its last."""
        every = self.forward_cfg.check_every
        return tuple(range(every - 1, budget - 1, every)) + (budget - 1, )

    def _forward_budget(self, max_iter: Optional[int]) -> int:
        """The forward budget of a call given ``max_iter``."""
        budget = max_iter
        if budget is None:
            budget = self.train_max_iter if self.training else self.eval_max_iter
        return self.forward_cfg.max_iter if budget is None else budget

    def _solve_forward(self, flat_f: FlatFn, z0: Tensor, budget: int,
                       callback: Optional[Callable[[SolverState], Optional[bool]]] = None,
                       captured: Optional[CapturingMap] = None) -> Tuple[Tensor, Optional[Tensor]]:
        """Forward solve (plus 'fixed_point' re-solve); returns ``z*`` and the failed mask.

        ``captured``, if given, is the map the solve evaluates (keeping some evaluations'
        graphs); it wraps ``flat_f``.
        """
        kwargs = self.forward_cfg.solve_kwargs()
        kwargs['max_iter'] = budget
        z_star, stats = solve(captured or flat_f, z0, callback=callback, name='forward_solver',
                              **kwargs)
        self.last_forward_stats = stats
        bad = stats.failed
        if not bool(bad.any()):
            return z_star, None
        self.fallback_counts['forward'] += 1
        fb = self.fallback_cfg
        if fb.type == 'fixed_point':
            kwargs.update(solver='fixed_point', tau=fb.tau,
                          max_iter=fb.max_iter or kwargs['max_iter'])
            z_fp, self.last_fallback_stats = solve(flat_f, z_star, name='fallback', **kwargs)
            z_star = _select(bad, z_fp, z_star)
        return z_star, bad

    def _trajectory(self, flat_f: FlatFn, starts: Sequence[Optional[Capture]], z_star: Tensor,
                    bad: Optional[Tensor], at_z_star: Optional[Capture] = None
                    ) -> Tuple[Tensor, ...]:
        """The sampled iterates, each through ``k`` differentiable damped steps of ``f``, the
        first one the solve's own evaluation kept in ``starts``; ``z*`` (its evaluation
        ``at_z_star`` if kept) for those the solve stopped before. A sample that failed the
        solve, or whose state is not finite, gets its detached ``z*`` instead (its start is
        replaced by ``z*`` before any step, so no NaN enters the graph)."""
        cfg = self.trajectory_cfg
        states = []
        for captured in starts:
            captured = captured or at_z_star
            start = z_star if captured is None else captured[0]
            keep = torch.isfinite(start).all(dim=1)
            if bad is not None:
                keep &= ~bad
            if captured is None or not bool(keep.all()):
                captured = None
                start = _select(keep, start.detach(), z_star)
            state = self._iterate(flat_f, start, cfg.k, cfg.tau, 0, captured)
            keep &= torch.isfinite(state).all(dim=1)
            states.append(_select(keep, state, z_star))
        return tuple(states)

    def _solve_fixed_budget(self, flat_f: FlatFn, z0: Tensor, max_iter: Optional[int],
                            callback: Optional[Callable[[SolverState], Optional[bool]]]
                            ) -> Tensor:
        """The evaluation solve of ``eval_fixed_budget``: no fallback, no host sync."""
        if callback is not None:
            raise ValueError('a solver callback reads the solve on the host at every step; '
                             'it cannot run with eval_fixed_budget=True')
        kwargs = self.forward_cfg.solve_kwargs()
        kwargs['max_iter'] = max_iter or self.eval_max_iter or self.forward_cfg.max_iter
        z_star, self.last_forward_stats = solve_fixed_budget(flat_f, z0, **kwargs)
        return z_star

    def _train_output(self, flat_f: FlatFn, z_star: Tensor, probes: int,
                      first: Optional[Capture] = None) -> Tensor:
        """Differentiable output at the fixed point for the configured backward; ``first``,
        the solve's evaluation at ``z*`` with its graph, saves the first ``f`` evaluation."""
        bwd = self.backward_cfg
        if bwd.type == 'phantom':
            return self._iterate(flat_f, z_star, bwd.k, bwd.tau, probes, first)
        z_in, fz = first or (None, None)
        if first is None:
            z_in = z_star.detach().requires_grad_()
            fz = flat_f(z_in)
        if probes:
            self.last_jacobian_loss = jacobian_frobenius_reg(fz, z_in, probes)
        return _ImplicitGrad.apply(self, z_in, fz)

    def _iterate(self, flat_f: FlatFn, z: Tensor, steps: int, tau: float,
                 probes: int, first: Optional[Capture] = None) -> Tensor:
        """``steps`` differentiable steps ``z <- tau f(z) + (1 - tau) z`` from ``z``.

        ``first``: ``(z, f(z))`` already evaluated with its graph, used as the first step
        (its ``z`` replaces the argument). With ``probes > 0`` the Jacobian regularizer is
        taken at the last step.
        """
        for i in range(steps):
            if i == 0 and first is not None:
                z, fz = first
            else:
                if probes and i == steps - 1 and not z.requires_grad:
                    z = z.detach().requires_grad_()
                fz = flat_f(z)
            if probes and i == steps - 1:
                self.last_jacobian_loss = jacobian_frobenius_reg(fz, z, probes)
            z = fz if tau == 1.0 else tau * fz + (1.0 - tau) * z
        return z

    def _guard(self, out: Tensor, z_star: Tensor) -> Tensor:
        """Replace samples with NaN/Inf in ``out`` by their (finite) best iterate."""
        finite = torch.isfinite(out).all(dim=1)
        if bool(finite.all()):
            return out
        self.fallback_counts['nonfinite'] += 1
        message = (f'DEQ output had NaN/Inf for {int((~finite).sum())} sample(s); they were '
                   'replaced by their best solver iterate')
        if out.requires_grad:
            message += (' (detached), but the NaN/Inf inside their computation usually still '
                        'reaches the parameter gradients: skip this optimizer step')
        warnings.warn(message)
        return _select(finite, out, z_star.detach())

    def _implicit_grad(self, z_in: Tensor, fz: Tensor, grad: Tensor) -> Tensor:
        """Solve ``g = g J_f(z*) + grad`` (per sample) and apply ``on_fail``."""
        bwd = self.backward_cfg

        def vjp(g: Tensor) -> Tensor:
            (out, ) = torch.autograd.grad(fz, z_in, g, retain_graph=True, allow_unused=True)
            return torch.zeros_like(g) if out is None else out

        g, stats = solve(lambda u: vjp(u) + grad, grad, name='backward',
                         **bwd.solver.solve_kwargs())
        self.last_backward_stats = stats
        self.last_backward_vjps = stats.nfe
        failed = ~stats.converged | stats.failed
        if not bool(failed.any()):
            return g.to(grad.dtype)
        self.fallback_counts['backward'] += 1
        if bwd.on_fail == 'detach':
            g = _select(failed, torch.zeros_like(g), g)
        elif bwd.on_fail == 'phantom':
            grad = grad.to(g.dtype)
            with torch.no_grad():
                g = _select(failed, self._phantom_grad(vjp, grad, g, bwd.k, bwd.tau), g)
            self.last_backward_vjps += bwd.k - 1
        return g.to(grad.dtype)

    @staticmethod
    def _phantom_grad(vjp: FlatFn, grad: Tensor, start: Tensor, k: int, tau: float) -> Tensor:
        """``k - 1`` damped steps ``w <- tau (w J + grad) + (1 - tau) w`` from ``start``.

        From ``start = tau * grad`` these give the phantom gradient at ``f(z*)``,
        ``tau * sum_{i<k} grad M^i`` with ``M = tau J + (1 - tau) I``: what ``k``
        damped unrolled steps from ``z*`` backpropagate into ``f`` (exact at a fixed
        point). The fallback starts them from the best iterate of the implicit
        solve (at worst its start, ``grad``), so the solve's work is refined rather
        than thrown away; the exact gradient is a fixed point of these steps.
        """
        w = start
        for _ in range(k - 1):
            w = tau * (vjp(w) + grad) + (1.0 - tau) * w
        return w
