import torch

from mdeq_mm.deq import solve

from .test_solve import DTYPE, linear_problem


def test_memory_one_is_plain_fixed_point_iteration():
    f, z_star = linear_problem(batch=2, dim=6)
    z0 = torch.zeros_like(z_star)
    z_aa, s_aa = solve(f, z0, solver='anderson', memory=1, max_iter=9, tol=0.0)
    z_fp, s_fp = solve(f, z0, solver='fixed_point', max_iter=9, tol=0.0)
    assert torch.allclose(s_aa.abs_trace, s_fp.abs_trace, rtol=1e-12, atol=0)
    assert torch.allclose(z_aa, z_fp, rtol=1e-12, atol=0)


def test_beta_mixes_like_damping_with_memory_one():
    f, z_star = linear_problem(batch=2, dim=6)
    z0 = torch.zeros_like(z_star)
    _, s_aa = solve(f, z0, solver='anderson', memory=1, beta=0.5, max_iter=6, tol=0.0)
    _, s_fp = solve(f, z0, solver='fixed_point', tau=0.5, max_iter=6, tol=0.0)
    assert torch.allclose(s_aa.abs_trace, s_fp.abs_trace, rtol=1e-12, atol=0)


def test_singular_system_is_retried_and_counted_without_crashing():
    # identical residuals make G G^T rank one; a negligible ridge keeps it singular,
    # so every retry fails and the step falls back to z <- f(z)
    d = torch.tensor([[1.0, 2.0, 3.0]], dtype=DTYPE)
    z, stats = solve(lambda z: z + d, torch.zeros(1, 3, dtype=DTYPE), solver='anderson',
                     lam=1e-300, max_iter=5, tol=0.0, stop_mode='abs', divergence_factor=1e9)
    assert int(stats.degenerate) > 0
    assert bool(torch.isfinite(z).all())
    assert torch.allclose(stats.abs_trace.squeeze(1), d.norm().expand(5), rtol=1e-12)
