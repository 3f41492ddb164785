import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mdeq_mm.deq import BackwardConfig, DEQCore, FallbackConfig, SolverConfig
from mdeq_mm.deq import solve
from mdeq_mm.deq.solve import _run as run_solve
from mdeq_mm.deq.implicit import BACKWARD_CHECK_EVERY, BACKWARD_STALL_STEPS

from .problems import DTYPE

SHAPES = ((2, 4, 4), (3, 2, 2))
TIGHT = dict(type='broyden', max_iter=60, tol=1e-13, check_every=1)


class ToyMultiscale(nn.Module):
    """Contractive two-resolution map ``f(z) = tanh(W z + x)`` with cross-scale fusion.

    Branch a: (2, 4, 4), branch b: (3, 2, 2). The weights are rescaled so the
    linear part has spectral norm ``contraction`` (tanh is 1-Lipschitz).
    """

    def __init__(self, contraction=0.5, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        shapes = dict(a=(2, 2, 3, 3), b=(3, 3, 3, 3), down=(3, 2, 3, 3), up=(2, 3, 1, 1))
        self.w = nn.ParameterDict({
            k: nn.Parameter(torch.randn(s, generator=gen, dtype=DTYPE))
            for k, s in shapes.items()
        })
        with torch.no_grad():
            norm = torch.linalg.matrix_norm(self.linear_matrix(), ord=2)
            for p in self.w.values():
                p.mul_(contraction / norm)

    def linear(self, z, w=None):
        w = dict(self.w) if w is None else w
        za, zb = z
        up = F.interpolate(F.conv2d(zb, w['up']), scale_factor=2, mode='nearest')
        a = F.conv2d(za, w['a'], padding=1) + up
        b = F.conv2d(zb, w['b'], padding=1) + F.conv2d(za, w['down'], stride=2, padding=1)
        return a, b

    def linear_matrix(self):
        def flat(v):
            z = (v[:32].view(1, *SHAPES[0]), v[32:].view(1, *SHAPES[1]))
            return torch.cat([t.flatten() for t in self.linear(z)])

        return torch.autograd.functional.jacobian(flat, torch.zeros(44, dtype=DTYPE))

    def bind(self, x, w=None):
        """The DEQ map closing over the injection ``x`` (and optional weights)."""
        return lambda z: tuple(torch.tanh(h + xi) for h, xi in zip(self.linear(z, w), x))


def make_inputs(batch=2, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = tuple(torch.randn(batch, *s, generator=gen, dtype=DTYPE).requires_grad_() for s in SHAPES)
    z0 = tuple(torch.zeros(batch, *s, dtype=DTYPE) for s in SHAPES)
    return x, z0


def loss_of(out, seed=2):
    gen = torch.Generator().manual_seed(seed)
    return sum((torch.randn(o.shape, generator=gen, dtype=DTYPE) * o).sum() for o in out)


def gradients(model, core, mode='equilibrium', **call):
    x, z0 = make_inputs()
    model.zero_grad()
    loss_of(core(model.bind(x), z0, mode=mode, **call)).backward()
    return torch.cat([p.grad.flatten() for p in model.w.values()] + [t.grad.flatten() for t in x])


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


def test_toy_map_is_contractive():
    assert float(torch.linalg.matrix_norm(ToyMultiscale().linear_matrix(), ord=2)) < 0.51


def test_implicit_gradient_passes_gradcheck():
    model = ToyMultiscale()
    core = DEQCore(TIGHT, dict(type='implicit', max_iter=60, tol=1e-13, check_every=1))
    x, z0 = make_inputs(batch=1)
    w_fixed = {k: v.detach() for k, v in model.w.items()}

    def fn(xa, xb, w_up):
        return core(model.bind((xa, xb), dict(w_fixed, up=w_up)), z0)

    inputs = (*x, w_fixed['up'].clone().requires_grad_())
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)
    assert core.fallback_count == 0


def test_implicit_gradient_matches_a_200_step_unroll():
    model = ToyMultiscale()
    core = DEQCore(TIGHT, dict(type='implicit', max_iter=60, tol=1e-13), n_layers=200)
    g_ift = gradients(model, core)
    g_unroll = gradients(model, core, mode='unrolled')
    assert rel_err(g_ift, g_unroll) < 1e-6


def test_phantom_gradient_approaches_the_implicit_one_as_k_grows():
    model = ToyMultiscale()
    g_ift = gradients(model, DEQCore(TIGHT, dict(type='implicit', max_iter=60, tol=1e-13)))
    errors = [rel_err(gradients(model, DEQCore(TIGHT, dict(type='phantom', k=k, tau=1.0))), g_ift)
              for k in (1, 2, 5, 20)]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:]))
    assert errors[0] > 0.05 and errors[-1] < 1e-4


def test_backward_stats_are_readable_and_use_their_own_budget():
    model = ToyMultiscale()
    core = DEQCore(dict(type='broyden', max_iter=50, tol=1e-12),
                   dict(type='implicit', solver='anderson', max_iter=3, tol=1e-12,
                        on_fail='accept'))
    assert core.last_backward_stats is None
    gradients(model, core)
    stats = core.last_backward_stats
    assert stats is not None and stats.tol == 1e-12
    assert stats.nfe <= 3 and int(stats.steps.max()) <= 3
    assert core.last_forward_stats.nfe > 3
    assert core.fallback_counts['backward'] == 1
    # A new forward clears them, so stale backward stats are never read as this step's.
    x, z0 = make_inputs()
    with torch.no_grad():
        core(model.bind(x), z0)
    assert core.last_backward_stats is None


def fallback_by_hand(model, backward, k, tau, forward=TIGHT):
    """Parameter and injection gradients of ``k - 1`` damped steps ``w <- tau (w J + grad) +
    (1 - tau) w`` started from the best iterate of the backward solve ``backward``."""
    x, z0 = make_inputs()
    sizes = [t[0].numel() for t in z0]

    def flat_f(z):
        parts = torch.split(z, sizes, dim=1)
        zs = tuple(p.view(-1, *s) for p, s in zip(parts, SHAPES))
        return torch.cat([t.flatten(1) for t in model.bind(x)(zs)], dim=1)

    forward = dict(forward)
    z_star, _ = solve(flat_f, torch.cat([t.flatten(1) for t in z0], dim=1),
                      solver=forward.pop('type'), **forward)
    z_in = z_star.requires_grad_()
    fz = flat_f(z_in)
    out = tuple(o.view(-1, *s) for o, s in zip(torch.split(fz, sizes, dim=1), SHAPES))
    (grad, ) = torch.autograd.grad(loss_of(out), fz, retain_graph=True)

    def vjp(g):
        return torch.autograd.grad(fz, z_in, g, retain_graph=True)[0]

    w, _ = solve(lambda u: vjp(u) + grad, grad, **backward)
    for _ in range(k - 1):
        w = tau * (vjp(w) + grad) + (1.0 - tau) * w
    inputs = list(model.w.values()) + list(x)
    return torch.cat([g.flatten() for g in torch.autograd.grad(fz, inputs, w)])


def test_phantom_fallback_continues_from_the_best_iterate_of_the_backward_solve():
    model = ToyMultiscale()
    backward = dict(solver='broyden', max_iter=3, tol=1e-14)
    failing = DEQCore(TIGHT, dict(type='implicit', on_fail='phantom', phantom_k=4,
                                  phantom_tau=0.6, **backward))
    g_fallback = gradients(model, failing)
    assert failing.fallback_counts['backward'] == 1
    assert failing.last_backward_vjps == failing.last_backward_stats.nfe + 4 - 1
    g_by_hand = fallback_by_hand(model, dict(backward, stall_steps=5), k=4, tau=0.6)
    assert rel_err(g_fallback, g_by_hand) < 1e-10


def test_a_stalled_backward_solve_stops_early_and_its_fallback_starts_from_its_best_iterate():
    # a non-contractive map: plain iteration of the backward linear solve cannot converge
    model = ToyMultiscale(contraction=3.0)
    forward = dict(TIGHT, max_iter=150)
    backward = dict(solver='fixed_point', max_iter=40, tol=1e-10, check_every=1)
    core = DEQCore(forward, dict(type='implicit', on_fail='phantom', k=3, tau=0.5, **backward))
    g_fallback = gradients(model, core)
    stats = core.last_backward_stats
    assert core.last_forward_stats.converged.all()
    assert bool(stats.stalled.all()) and stats.nfe < 40
    assert core.last_backward_vjps == stats.nfe + 3 - 1
    g_by_hand = fallback_by_hand(model, dict(backward, stall_steps=5), k=3, tau=0.5,
                                 forward=forward)
    assert rel_err(g_fallback, g_by_hand) < 1e-10


def test_a_stalled_backward_solve_with_default_settings_stops_at_its_stall_step():
    # both samples stall after 6 VJPs (checked every 4 VJPs, the solve would run 8)
    model = ToyMultiscale(contraction=5.0)
    core = DEQCore(dict(TIGHT, max_iter=150),
                   dict(type='implicit', solver='fixed_point', max_iter=40, tol=1e-10))
    gradients(model, core)
    stats = core.last_backward_stats
    assert bool(stats.stalled.all())
    # no VJP after the last sample stalled
    assert stats.nfe == int(stats.steps.max()) < 40


def test_stall_rule_leaves_a_converging_backward_solve_unchanged():
    model = ToyMultiscale()
    backward = dict(type='implicit', max_iter=60, tol=1e-12, check_every=1)
    default = DEQCore(TIGHT, backward)
    g_default = gradients(model, default)
    g_off = gradients(model, DEQCore(TIGHT, dict(backward, stall_steps=None)))
    assert not default.last_backward_stats.stalled.any()
    assert torch.equal(g_default, g_off)


class CountVJPs(torch.autograd.Function):
    """Identity whose backward counts the vector-Jacobian products through it."""

    calls = 0

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        CountVJPs.calls += 1
        return grad


def test_phantom_fallback_continues_a_near_miss_from_its_best_iterate():
    model = ToyMultiscale()
    x, z0 = make_inputs()
    counted = model.bind(x)
    core = DEQCore(TIGHT, dict(type='implicit', max_iter=4, tol=1e-14, on_fail='phantom',
                               phantom_k=4, phantom_tau=0.6))
    out = core(lambda z: tuple(CountVJPs.apply(t) for t in counted(z)), z0)
    model.zero_grad()
    CountVJPs.calls = 0
    loss_of(out).backward()
    stats = core.last_backward_stats
    assert core.fallback_counts['backward'] == 1
    # per branch: the solve's VJPs, k - 1 fallback steps, then the final one into f
    assert CountVJPs.calls == len(SHAPES) * (stats.nfe + 4 - 1 + 1)
    g_fallback = torch.cat([p.grad.flatten() for p in model.w.values()])
    model.zero_grad()
    loss_of(core(model.bind(x), z0)).backward()
    g_phantom = gradients(model, DEQCore(TIGHT, dict(type='phantom', k=4, tau=0.6)))
    g_exact = gradients(model, DEQCore(TIGHT, dict(type='implicit', max_iter=60, tol=1e-12)))
    n = g_fallback.numel()
    assert rel_err(g_fallback, g_exact[:n]) < 0.1 * rel_err(g_phantom[:n], g_exact[:n])


def test_detach_fallback_of_the_implicit_backward_gives_no_gradient():
    model = ToyMultiscale()
    core = DEQCore(TIGHT, dict(type='implicit', max_iter=1, tol=1e-14, on_fail='detach'))
    assert float(gradients(model, core).abs().max()) == 0.0
    assert core.fallback_count == 1


def test_repeated_backward_through_a_retained_graph_is_identical():
    model = ToyMultiscale()
    core = DEQCore(TIGHT, dict(type='implicit', max_iter=60, tol=1e-12))
    x, z0 = make_inputs()
    loss = loss_of(core(model.bind(x), z0))
    first = torch.autograd.grad(loss, list(model.w.values()), retain_graph=True)
    second = torch.autograd.grad(loss, list(model.w.values()))
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert all(p.grad is None for p in model.w.values())


def test_parameters_accumulate_their_gradient_once_per_backward():
    # DDP reduces a parameter's gradient when it is accumulated: the solve must not do it
    model = ToyMultiscale()
    core = DEQCore(TIGHT, dict(type='implicit', max_iter=60, tol=1e-12))
    accumulated = []
    for p in model.w.values():
        p.register_post_accumulate_grad_hook(lambda p: accumulated.append(p))
    gradients(model, core)
    assert core.last_backward_stats.nfe > 1
    assert len(accumulated) == len(model.w)


def counted(f):
    """``f`` wrapped to append to a list at every call, and the list."""
    calls = []

    def counting_f(z):
        calls.append(1)
        return f(z)

    return counting_f, calls


def test_unrolled_mode_applies_f_n_layers_times_with_autograd():
    model = ToyMultiscale()
    core = DEQCore(TIGHT, n_layers=3)
    x, z0 = make_inputs()
    f = model.bind(x)
    counting_f, calls = counted(f)
    out = core(counting_f, z0, mode='unrolled')
    assert len(calls) == 3 and core.last_forward_stats is None
    expected = f(f(f(z0)))
    assert all(torch.allclose(o, e, rtol=1e-14, atol=0) for o, e in zip(out, expected))
    assert all(o.requires_grad for o in out)


def test_eval_returns_the_solver_iterate_with_an_overridable_budget():
    model = ToyMultiscale()
    # tol=0 never stops a sample (the residual is never below 0), so every solve uses its whole
    # budget; any tol > 0 would let the toy solve stop early where the BLAS kernel happens to
    # reach an exactly zero residual.
    core = DEQCore(dict(type='broyden', max_iter=30, tol=0.0)).eval()
    x, z0 = make_inputs()
    counting_f, calls = counted(model.bind(x))
    core.eval_max_iter = 4
    out = core(counting_f, z0)
    assert core.last_forward_stats.nfe == 4 and len(calls) == 4
    assert not any(o.requires_grad for o in out)
    core(counting_f, z0, max_iter=6)
    assert core.last_forward_stats.nfe == 6
    core.train()
    with torch.no_grad():
        core(counting_f, z0)
    assert core.last_forward_stats.nfe == 30


def _in_a_solve():
    """Whether the caller runs inside :func:`mdeq_mm.deq.solve` (a forward or fallback solve,
    not the differentiable steps after it)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is run_solve.__code__:
            return True
        frame = frame.f_back
    return False


def nan_after(f, calls_before_nan, only_in_solve):
    """``f`` that returns NaN for sample 0 after some calls (optionally only inside solves)."""
    calls = []

    def wrapped(z):
        calls.append(1)
        out = f(z)
        if len(calls) > calls_before_nan and not (only_in_solve and not _in_a_solve()):
            out = tuple(torch.cat([torch.full_like(o[:1], float('nan')), o[1:]]) for o in out)
        return out

    return wrapped


@pytest.mark.parametrize('fallback', ['fixed_point', 'unrolled', 'phantom', 'detach'])
def test_forward_nan_sets_the_flag_triggers_the_fallback_and_stays_finite(fallback):
    model = ToyMultiscale()
    core = DEQCore(TIGHT, dict(type='implicit', max_iter=30, tol=1e-10), dict(type=fallback))
    x, z0 = make_inputs()
    out = core(nan_after(model.bind(x), 3, only_in_solve=True), z0)
    assert core.last_forward_stats.nan.tolist() == [True, False]
    assert core.fallback_counts['forward'] == 1
    if fallback == 'fixed_point':
        assert core.last_fallback_stats.nan.tolist() == [True, False]
    assert all(bool(torch.isfinite(o).all()) for o in out)
    loss_of(out).backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in model.w.values())

    core.eval()
    f_nan = nan_after(model.bind(x), 3, only_in_solve=False)
    if fallback == 'unrolled':  # unrolling the NaN map gives NaN: guarded, with a warning
        with pytest.warns(UserWarning, match='NaN/Inf'):
            out = core(f_nan, z0)
        assert core.fallback_counts['nonfinite'] == 1
    else:
        out = core(f_nan, z0)
    assert core.fallback_counts['forward'] == 2
    assert all(bool(torch.isfinite(o).all()) for o in out)


def test_nan_in_the_output_is_replaced_counted_and_warned_about():
    model = ToyMultiscale()
    core = DEQCore(TIGHT, dict(type='implicit', max_iter=30, tol=1e-10), dict(type='fixed_point'))
    x, z0 = make_inputs()
    with pytest.warns(UserWarning, match='NaN/Inf'):
        out = core(nan_after(model.bind(x), 3, only_in_solve=False), z0)
    assert core.fallback_counts == {'forward': 1, 'backward': 0, 'nonfinite': 1}
    assert all(bool(torch.isfinite(o).all()) for o in out)


def test_divergence_sets_the_flag_and_the_unrolled_fallback_replaces_that_sample():
    core = DEQCore(dict(type='fixed_point', max_iter=40, tol=1e-10, stop_mode='abs'),
                   fallback_cfg=dict(type='unrolled'), n_layers=3).eval()
    c = torch.tensor([3.0, 0.5], dtype=DTYPE).view(2, 1)
    (out, ) = core(lambda z: (c * z[0] + 1, ), (torch.zeros(2, 4, dtype=DTYPE), ))
    assert core.last_forward_stats.diverged.tolist() == [True, False]
    assert core.fallback_count == 1
    assert torch.equal(out[0], torch.full((4, ), 13.0, dtype=DTYPE))  # 0 -> 1 -> 4 -> 13
    assert torch.allclose(out[1], torch.full((4, ), 2.0, dtype=DTYPE), atol=1e-9)


def test_divergence_with_the_fixed_point_fallback_keeps_the_best_iterate():
    core = DEQCore(dict(type='fixed_point', max_iter=40, tol=1e-10, stop_mode='abs'),
                   fallback_cfg=dict(type='fixed_point', tau=0.5)).eval()
    c = torch.tensor([3.0, 0.5], dtype=DTYPE).view(2, 1)
    (out, ) = core(lambda z: (c * z[0] + 1, ), (torch.zeros(2, 4, dtype=DTYPE), ))
    assert core.last_fallback_stats.diverged[0] and core.fallback_count == 1
    assert torch.equal(out[0], torch.zeros(4, dtype=DTYPE))


def test_jacobian_loss_is_available_and_differentiable_in_training():
    model = ToyMultiscale()
    for backward in (dict(type='implicit', max_iter=30, tol=1e-10), dict(type='phantom', k=2)):
        core = DEQCore(TIGHT, backward)
        x, z0 = make_inputs()
        out = core(model.bind(x), z0, jacobian_probes=2)
        jac = core.last_jacobian_loss
        assert jac is not None and jac.dim() == 0 and jac.item() > 0
        model.zero_grad()
        (loss_of(out) + jac).backward()
        assert all(bool(torch.isfinite(p.grad).all()) for p in model.w.values())
    core.eval()
    core(model.bind(x), z0, jacobian_probes=2)
    assert core.last_jacobian_loss is None


def test_autocast_output_is_float32_and_gradients_flow():
    torch.manual_seed(0)
    lin = nn.Linear(16, 16)
    with torch.no_grad():
        lin.weight.mul_(0.5 / torch.linalg.matrix_norm(lin.weight, ord=2))
    x = torch.randn(2, 16)
    core = DEQCore(dict(type='broyden', max_iter=20, tol=2e-2),
                   dict(type='implicit', max_iter=20, tol=2e-2))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        (out, ) = core(lambda z: (torch.tanh(lin(z[0]) + x), ), (torch.zeros(2, 16), ))
    assert out.dtype == torch.float32
    assert bool(core.last_forward_stats.converged.all())
    out.sum().backward()
    assert lin.weight.grad is not None and bool(torch.isfinite(lin.weight.grad).all())


@pytest.mark.parametrize('cfg, bad', [
    (dict(type='implicit', max_iters=3), 'max_iters'),
    (dict(type='phantom', k=3, max_iter=5), 'max_iter'),
    (dict(type='implicit', on_fail='retry'), 'retry'),
    (dict(type='implicit', solver='newton'), 'newton'),
    (dict(type='implicit', stop_mode='l2'), 'l2'),
    (dict(type='phantom', k=0), 'k'),
    (dict(type='ift'), 'ift'),
])
def test_backward_config_names_the_bad_key_or_value(cfg, bad):
    with pytest.raises(ValueError, match=bad):
        BackwardConfig.from_dict(cfg)


@pytest.mark.parametrize('build', [
    lambda: BackwardConfig.from_dict(dict(type='implicit', on_fail='zero')).on_fail,
    lambda: BackwardConfig(on_fail='zero').on_fail,
    lambda: FallbackConfig.from_dict(dict(type='skip')).type,
    lambda: FallbackConfig(type='skip').type,
])
def test_the_old_names_of_detach_still_work_with_a_warning(build):
    with pytest.warns(FutureWarning, match="deprecated; use 'detach'"):
        assert build() == 'detach'


def test_an_implicit_backward_reads_its_old_k_and_tau_as_the_phantom_fallback_with_a_warning():
    with pytest.warns(FutureWarning, match='sets the phantom fallback: use phantom_'):
        old = BackwardConfig.from_dict(dict(type='implicit', solver='fixed_point', k=3, tau=0.4))
    new = BackwardConfig.from_dict(dict(type='implicit', solver='fixed_point', phantom_k=3,
                                        phantom_tau=0.4))
    assert old == new and (new.k, new.tau, new.solver.tau) == (3, 0.4, 1.0)
    with pytest.raises(ValueError, match='both phantom_k and its deprecated name k'):
        BackwardConfig.from_dict(dict(type='implicit', k=3, phantom_k=3))


def test_core_validates_all_of_its_settings():
    cfg = BackwardConfig.from_dict(dict(type='implicit', solver='anderson', max_iter=7,
                                        phantom_k=2))
    assert cfg.solver == SolverConfig(type='anderson', max_iter=7, stall_steps=BACKWARD_STALL_STEPS,
                                      check_every=BACKWARD_CHECK_EVERY)
    assert cfg.k == 2 and BackwardConfig().solver == SolverConfig(
        stall_steps=BACKWARD_STALL_STEPS, check_every=BACKWARD_CHECK_EVERY)
    with pytest.raises(ValueError, match='newton'):
        DEQCore(forward_cfg=dict(type='newton'))
    with pytest.raises(ValueError, match='tau'):
        DEQCore(fallback_cfg=dict(type='detach', tau=0.5))
    with pytest.raises(ValueError, match='restart'):
        FallbackConfig.from_dict(dict(type='restart'))
    with pytest.raises(ValueError, match='n_layers'):
        DEQCore(n_layers=0)
    with pytest.raises(ValueError, match='warmup'):
        DEQCore()(lambda z: z, (torch.zeros(1, 2), ), mode='warmup')
