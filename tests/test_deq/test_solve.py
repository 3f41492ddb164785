import math

import pytest
import torch

from mdeq_mm.deq import SOLVERS, SolverConfig, solve
from mdeq_mm.deq.solve import pick_rows

from .problems import DTYPE, linear_problem


def per_sample_map(scales, rows=None, dim=8, seed=1):
    """``f(z) = c_b tanh(W z) + x_b``: sample b is harder the larger ``c_b``.

    ``rows`` keeps only those samples (the same maps, solved without the rest).
    """
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, dim, generator=gen, dtype=DTYPE) / math.sqrt(dim)
    x = torch.randn(len(scales), dim, generator=gen, dtype=DTYPE)
    c = torch.tensor(scales, dtype=DTYPE).unsqueeze(1)
    if rows is not None:
        x, c = x[rows], c[rows]
    return lambda z: c * torch.tanh(z @ w.T) + x


def relative_residual(f, z):
    fz = f(z)
    return (fz - z).norm(dim=1) / (fz.norm(dim=1) + 1e-9)


@pytest.mark.parametrize('solver', ['broyden', 'anderson'])
def test_quasi_newton_beats_fixed_point_on_linear_problem(solver):
    f, z_star = linear_problem()
    z0 = torch.zeros_like(z_star)
    z, stats = solve(f, z0, solver=solver, max_iter=300, tol=1e-10, check_every=1)
    z_fp, stats_fp = solve(f, z0, solver='fixed_point', max_iter=2000, tol=1e-10, check_every=1)
    assert bool(stats.converged.all()) and bool(stats_fp.converged.all())
    assert torch.allclose(z, z_star, atol=1e-8, rtol=0)
    assert torch.allclose(z_fp, z_star, atol=1e-7, rtol=0)
    assert stats.nfe * 3 < stats_fp.nfe


def test_unknown_solver_name_is_named_with_valid_names():
    with pytest.raises(ValueError, match="'newton'") as err:
        solve(lambda z: z, torch.zeros(1, 2), solver='newton')
    for name in SOLVERS:
        assert name in str(err.value)


@pytest.mark.parametrize('cfg, bad', [
    (dict(type='broyden', max_iters=5), 'max_iters'),
    (dict(stop_mode='relative'), 'relative'),
    (dict(max_iter=0), 'max_iter'),
    (dict(tol=-1.0), 'tol'),
    (dict(memory=0), 'memory'),
    (dict(tau=1.5), 'tau'),
    (dict(check_every=0), 'check_every'),
    (dict(stall_steps=0), 'stall_steps'),
    (dict(stall_ratio=1.0), 'stall_ratio'),
    (dict(type='lbfgs'), 'lbfgs'),
])
def test_solver_config_names_the_bad_key_or_value(cfg, bad):
    with pytest.raises(ValueError, match=bad):
        SolverConfig.from_dict(cfg)


def test_solver_config_maps_onto_solve_arguments():
    cfg = SolverConfig.from_dict(dict(type='anderson', max_iter=7, tol=1e-5, memory=3))
    f, z_star = linear_problem(batch=2, dim=4)
    _, stats = solve(f, torch.zeros_like(z_star), **cfg.solve_kwargs())
    assert stats.nfe <= 7 and stats.tol == 1e-5


@pytest.mark.parametrize('solver', sorted(SOLVERS))
def test_easy_samples_do_not_depend_on_a_hard_sample_in_the_batch(solver):
    scales = [0.3, 0.97, 0.5]
    kwargs = dict(solver=solver, max_iter=60, tol=1e-9, check_every=3)
    z_all, stats_all = solve(per_sample_map(scales), torch.zeros(3, 8, dtype=DTYPE), **kwargs)
    easy = [0, 2]
    z_sub, stats_sub = solve(per_sample_map(scales, rows=easy), torch.zeros(2, 8, dtype=DTYPE),
                             **kwargs)
    assert torch.allclose(z_all[easy], z_sub, atol=1e-12, rtol=0)
    assert torch.equal(stats_all.steps[easy], stats_sub.steps)
    assert torch.equal(stats_all.best_step[easy], stats_sub.best_step)
    assert int(stats_all.steps[1]) > int(stats_all.steps[easy].max())
    for b in easy:  # a stopped sample is frozen: f keeps seeing the same state
        after_stop = stats_all.rel_trace[int(stats_all.steps[b]) - 1:, b]
        assert bool((after_stop == after_stop[0]).all())


def test_lowest_residual_iterate_is_returned_not_the_last():
    # non-normal A: the residual of the fixed-point iterates drops, then grows
    a = torch.tensor([[0.5, 3.0], [0.0, 0.5]], dtype=DTYPE)
    f = lambda z: z @ a.T  # noqa: E731
    z0 = torch.tensor([[0.0, 1.0], [0.0, -2.0]], dtype=DTYPE)
    z, stats = solve(f, z0, solver='fixed_point', max_iter=4, tol=1e-12)
    assert stats.nfe == 4 and stats.best_step.tolist() == [1, 1]
    assert torch.equal(z, f(z0))
    last = stats.rel_trace[-1]
    assert bool((stats.rel_res < last).all())
    assert torch.equal(stats.rel_res, stats.rel_trace.min(dim=0).values)


@pytest.mark.parametrize('solver', sorted(SOLVERS))
def test_stats_describe_the_returned_iterate(solver):
    f = per_sample_map([0.3, 0.97, 0.9])
    z, stats = solve(f, torch.zeros(3, 8, dtype=DTYPE), solver=solver, max_iter=6, tol=1e-12)
    assert torch.allclose(relative_residual(f, z), stats.rel_res, rtol=1e-12, atol=0)
    assert torch.allclose((f(z) - z).norm(dim=1), stats.abs_res, rtol=1e-12, atol=0)
    picked = stats.rel_trace.gather(0, stats.best_step.unsqueeze(0)).squeeze(0)
    assert torch.equal(picked, stats.rel_res)
    assert stats.abs_trace.shape == (stats.nfe, 3)


def test_best_iterate_starts_at_z0_when_nothing_improves():
    z0 = torch.full((2, 3), 0.5, dtype=DTYPE)
    z, stats = solve(lambda z: 2 * z + 1, z0, solver='fixed_point', max_iter=5, tol=1e-9,
                     stop_mode='abs', divergence_factor=1e9)
    assert torch.equal(z, z0)
    assert stats.best_step.tolist() == [0, 0]
    assert torch.allclose(stats.abs_res, torch.full((2, ), 1.5 * math.sqrt(3), dtype=DTYPE))
    assert not bool(stats.diverged.any())


def test_sample_with_nonfinite_f_at_z0_returns_z0_and_its_residual():
    def f(z):
        out = z + 1.0
        out[0] = float('inf')
        return out

    z0 = torch.zeros(2, 3, dtype=DTYPE)
    z, stats = solve(f, z0, max_iter=5, tol=1e-9)
    assert torch.equal(z[0], z0[0]) and int(stats.best_step[0]) == 0
    assert stats.nan.tolist() == [True, False] and int(stats.steps[0]) == 1
    assert float(stats.abs_res[0]) == float('inf')


@pytest.mark.parametrize('solver', sorted(SOLVERS))
def test_nan_sample_is_flagged_and_frozen_at_its_best_iterate(solver):
    f_clean = per_sample_map([0.9, 0.5])
    calls = []

    def f(z):
        calls.append(1)
        out = f_clean(z)
        if len(calls) > 3:
            out[0] = float('nan')
        return out

    z, stats = solve(f, torch.zeros(2, 8, dtype=DTYPE), solver=solver, max_iter=40, tol=1e-10)
    assert stats.nan.tolist() == [True, False]
    assert int(stats.steps[0]) == 4 and int(stats.best_step[0]) <= 2
    assert bool(torch.isfinite(z).all())
    z_alone, _ = solve(per_sample_map([0.9, 0.5], rows=[1]), torch.zeros(1, 8, dtype=DTYPE),
                       solver=solver, max_iter=40, tol=1e-10)
    assert torch.allclose(z[1:], z_alone, atol=1e-12, rtol=0)


def test_divergent_sample_is_flagged_while_the_other_converges():
    c = torch.tensor([[3.0], [0.5]], dtype=DTYPE)
    z, stats = solve(lambda z: c * z + 1, torch.zeros(2, 4, dtype=DTYPE), solver='fixed_point',
                     max_iter=50, tol=1e-8, stop_mode='abs', divergence_factor=1e3)
    assert stats.diverged.tolist() == [True, False]
    assert not bool(stats.nan.any())
    assert int(stats.steps[0]) < 10
    assert torch.equal(z[0], torch.zeros(4, dtype=DTYPE))
    assert torch.allclose(z[1], torch.full((4, ), 2.0, dtype=DTYPE), atol=1e-7)


def test_callback_sees_the_state_and_can_stop_the_solve():
    seen = []

    def callback(state):
        seen.append((state.step, state.rel_res.shape, state.active.dtype))
        return state.step == 3

    f, z_star = linear_problem(batch=2, dim=4)
    _, stats = solve(f, torch.zeros_like(z_star), max_iter=30, tol=1e-12, callback=callback)
    assert stats.nfe == 3
    assert seen == [(s, (2, ), torch.bool) for s in (1, 2, 3)]


def test_all_stopped_exit_is_checked_every_check_every_steps():
    f, z_star = linear_problem(batch=2, dim=6)
    z0 = torch.zeros_like(z_star)
    z1, s1 = solve(f, z0, max_iter=200, tol=1e-8, check_every=1)
    z5, s5 = solve(f, z0, max_iter=200, tol=1e-8, check_every=5)
    last_stop = int(s1.steps.max())
    assert s1.nfe == last_stop
    assert s5.nfe == 5 * math.ceil(last_stop / 5)
    assert torch.equal(z1, z5) and torch.equal(s1.steps, s5.steps)


def test_autocast_keeps_the_solver_state_in_float32_and_converges():
    torch.manual_seed(0)
    lin = torch.nn.Linear(32, 32)
    with torch.no_grad():
        lin.weight.mul_(0.5 / torch.linalg.matrix_norm(lin.weight, ord=2))
    x = torch.randn(4, 32)
    dtypes = []

    def f(z):
        h = lin(z)
        dtypes.append(h.dtype)
        return torch.tanh(h + x)

    with torch.autocast('cpu', dtype=torch.bfloat16):
        z, stats = solve(f, torch.zeros(4, 32), max_iter=30, tol=2e-2)
    assert set(dtypes) == {torch.bfloat16}
    assert z.dtype == torch.float32 and stats.rel_res.dtype == torch.float32
    assert bool(stats.converged.all())
    z_ref, _ = solve(lambda u: torch.tanh(lin(u) + x), torch.zeros(4, 32), max_iter=30, tol=1e-6)
    assert torch.allclose(z, z_ref, atol=5e-2)


@pytest.mark.parametrize('solver', ['broyden', 'anderson'])
def test_solver_inner_products_ignore_the_callers_autocast(solver):
    # f is exact in float32; a solver doing its algebra in bfloat16 stalls near 1e-3
    torch.manual_seed(0)
    w = 0.9 * torch.randn(32, 32) / math.sqrt(32)
    x = torch.randn(4, 32)

    def f(z):
        with torch.autocast('cpu', enabled=False):
            return torch.tanh(z @ w.T + x)

    with torch.autocast('cpu', dtype=torch.bfloat16):
        _, stats = solve(f, torch.zeros(4, 32), solver=solver, max_iter=40, tol=1e-6)
    assert bool(stats.converged.all())


def test_a_stalled_sample_stops_early_while_a_converging_one_is_unchanged():
    # sample 0: f(z) = z/2 + c converges; sample 1: f(z) = -z + c oscillates with a constant
    # residual, so its best residual never halves
    c = torch.tensor([[1.0, -2.0], [3.0, 0.5]], dtype=DTYPE)
    a = torch.tensor([[0.5], [-1.0]], dtype=DTYPE)
    f = lambda z: a * z + c  # noqa: E731
    common = dict(solver='fixed_point', max_iter=40, tol=1e-10, check_every=1)
    z_plain, plain = solve(f, torch.zeros_like(c), **common)
    z_stall, stall = solve(f, torch.zeros_like(c), stall_steps=3, **common)
    assert stall.stalled.tolist() == [False, True] and not plain.stalled.any()
    assert stall.steps.tolist() == [plain.steps[0].item(), 3 + 1]
    assert plain.steps[1].item() == 40 and stall.nfe == plain.steps[0].item()
    assert torch.equal(z_stall[0], z_plain[0]) and torch.equal(z_stall[1], z_plain[1])
    assert stall.converged.tolist() == [True, False]


def test_stall_rule_keeps_a_solve_that_gains_the_factor_in_every_window():
    f, z_star = linear_problem(radius=0.6)
    common = dict(solver='broyden', max_iter=40, tol=1e-12, check_every=1)
    z_plain, plain = solve(f, torch.zeros_like(z_star), **common)
    z_stall, stall = solve(f, torch.zeros_like(z_star), stall_steps=5, **common)
    assert not stall.stalled.any() and bool(stall.converged.all())
    assert torch.equal(z_stall, z_plain) and stall.nfe == plain.nfe


@pytest.mark.parametrize('mask', [[True, False, True], [True] * 3, [False] * 3])
def test_pick_rows_takes_whole_rows_exactly_even_next_to_nan(mask):
    a = torch.randn(3, 5, dtype=DTYPE)
    b = torch.full((3, 5), float('nan'), dtype=DTYPE)
    b[1] = 2.0
    mask = torch.tensor(mask)
    out = pick_rows(mask, a, b)
    expected = torch.where(mask.unsqueeze(1), a, b)
    assert torch.equal(out.isnan(), expected.isnan())
    assert torch.equal(out.nan_to_num(), expected.nan_to_num())


def test_the_result_never_shares_memory_with_the_callers_start():
    # z0 stays the best iterate of this diverging map, and is returned as a copy
    z0 = torch.randn(2, 4, dtype=DTYPE)
    z, stats = solve(lambda z: 3.0 * z + 1.0, z0, solver='fixed_point', max_iter=5, tol=0.0,
                     stop_mode='abs')
    assert stats.best_step.tolist() == [0, 0]
    assert torch.equal(z, z0) and z.data_ptr() != z0.data_ptr()
