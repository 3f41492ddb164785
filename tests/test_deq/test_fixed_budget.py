import math
import warnings

import pytest
import torch

from mdeq_mm.deq import SOLVERS, solve, solve_fixed_budget
from mdeq_mm.deq.fixed_budget import _cholesky_solve_ones

from .problems import DTYPE, linear_problem, recording

SOLVER_OPTIONS = {'broyden': dict(memory=4), 'anderson': dict(memory=3, beta=0.8),
                  'fixed_point': dict(tau=0.7)}


def tanh_map(scales, dim=12, seed=3):
    """``f(z) = c_b tanh(W z) + x_b``, samples of different difficulty."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, dim, generator=gen, dtype=DTYPE) / math.sqrt(dim)
    x = torch.randn(len(scales), dim, generator=gen, dtype=DTYPE)
    c = torch.tensor(scales, dtype=DTYPE).unsqueeze(1)
    return lambda z: c * torch.tanh(z @ w.T) + x


def assert_same_solve(fixed, usual):
    """The same iterate and statistics; the usual solve may have ended the batch early."""
    (z_a, stats_a), (z_b, stats_b) = fixed, usual
    assert torch.allclose(z_a, z_b, rtol=1e-9, atol=1e-12)
    for name in ('steps', 'best_step', 'nan', 'diverged', 'stalled'):
        assert torch.equal(getattr(stats_a, name), getattr(stats_b, name)), name
    assert torch.allclose(stats_a.abs_trace[:stats_b.nfe], stats_b.abs_trace, rtol=1e-9,
                          atol=1e-12, equal_nan=True)
    assert int(stats_a.degenerate) == int(stats_b.degenerate)


@pytest.mark.parametrize('solver', sorted(SOLVERS))
@pytest.mark.parametrize('problem', ['linear', 'tanh'])
def test_fixed_budget_solve_equals_the_usual_solve_at_tol_zero(solver, problem):
    f = linear_problem()[0] if problem == 'linear' else tanh_map([0.5, 0.9, 1.5])
    z0 = torch.zeros(3, 16 if problem == 'linear' else 12, dtype=DTYPE)
    kwargs = dict(solver=solver, max_iter=15, tol=0.0, **SOLVER_OPTIONS[solver])
    fixed, usual = solve_fixed_budget(f, z0, **kwargs), solve(f, z0, **kwargs)
    assert fixed[1].nfe == usual[1].nfe == 15
    assert_same_solve(fixed, usual)


@pytest.mark.parametrize('solver', sorted(SOLVERS))
def test_samples_that_stop_early_are_frozen_as_in_the_usual_solve(solver):
    f = tanh_map([0.2, 0.9, 0.5])
    z0 = torch.zeros(3, 12, dtype=DTYPE)
    kwargs = dict(solver=solver, max_iter=20, tol=1e-4, stall_steps=6, **SOLVER_OPTIONS[solver])
    fixed, usual = solve_fixed_budget(f, z0, **kwargs), solve(f, z0, **kwargs)
    assert len(set(fixed[1].steps.tolist())) > 1  # the samples stopped at different steps
    assert fixed[1].nfe == 20
    assert_same_solve(fixed, usual)


def test_every_evaluation_of_the_budget_is_spent_after_all_samples_stopped():
    f, calls = recording(tanh_map([0.2, 0.3]))
    z, stats = solve_fixed_budget(f, torch.zeros(2, 12, dtype=DTYPE), max_iter=30, tol=1e-3)
    assert len(calls) == 30 and stats.nfe == 30
    assert bool(stats.converged.all()) and int(stats.steps.max()) < 30


@pytest.mark.parametrize('solver', sorted(SOLVERS))
def test_nan_sample_is_flagged_and_frozen_like_in_the_usual_solve(solver):
    f_clean = tanh_map([0.9, 0.5])

    def make_f():
        calls = []

        def f(z):
            calls.append(1)
            out = f_clean(z)
            if len(calls) > 3:
                out = torch.cat([torch.full_like(out[:1], float('nan')), out[1:]])
            return out

        return f

    z0 = torch.zeros(2, 12, dtype=DTYPE)
    fixed = solve_fixed_budget(make_f(), z0, solver=solver, max_iter=12, tol=0.0)
    assert fixed[1].nan.tolist() == [True, False] and bool(torch.isfinite(fixed[0]).all())
    assert_same_solve(fixed, solve(make_f(), z0, solver=solver, max_iter=12, tol=0.0))


@pytest.mark.filterwarnings('ignore:`torch.jit.trace` is deprecated:FutureWarning')
@pytest.mark.parametrize('solver', sorted(SOLVERS))
def test_traced_solve_reads_nothing_on_the_host_and_generalizes_to_new_inputs(solver):
    w = torch.randn(12, 12, generator=torch.Generator().manual_seed(0), dtype=DTYPE) / 4

    def run(x):
        return solve_fixed_budget(lambda z: torch.tanh(z @ w.T) + x, torch.zeros_like(x),
                                  solver=solver, max_iter=8, tol=1e-3)[0]

    with warnings.catch_warnings():
        warnings.simplefilter('error', torch.jit.TracerWarning)
        traced = torch.jit.trace(run, torch.zeros(2, 12, dtype=DTYPE), check_trace=False)
    x = torch.randn(2, 12, dtype=DTYPE)
    assert torch.allclose(traced(x), run(x), rtol=1e-12, atol=1e-12)


def test_unrolled_cholesky_solves_like_lapack_and_flags_what_it_cannot_factor():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(4, 5, 5, generator=gen, dtype=DTYPE)
    spd = a @ a.mT + 0.1 * torch.eye(5, dtype=DTYPE)
    spd[1] = -spd[1]  # not positive definite
    spd[2, 0, 0] = float('nan')
    x, ok = _cholesky_solve_ones(spd)
    chol, info = torch.linalg.cholesky_ex(spd)
    assert ok.tolist() == (info == 0).tolist() == [True, False, False, True]
    expected = torch.cholesky_solve(torch.ones(4, 5, 1, dtype=DTYPE), chol)
    assert torch.allclose(x[ok], expected[ok], rtol=1e-10, atol=0)


def test_flat_state_is_required():
    with pytest.raises(ValueError, match=r'flat \(B, D\) state, got shape \(2, 3, 4\)'):
        solve_fixed_budget(lambda z: z, torch.zeros(2, 3, 4))
