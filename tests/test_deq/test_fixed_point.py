import torch

from mdeq_mm.deq import solve

from .problems import DTYPE


def test_damped_iteration_follows_the_update_rule():
    f = lambda z: -0.5 * z + 3.0  # noqa: E731
    z, tau = torch.zeros(1, 1, dtype=DTYPE), 0.6
    expected = [z]
    for _ in range(3):
        z = tau * f(z) + (1 - tau) * z
        expected.append(z)
    residuals = torch.cat([(f(e) - e).abs() for e in expected]).squeeze(1)
    z_out, stats = solve(f, torch.zeros(1, 1, dtype=DTYPE), solver='fixed_point', tau=tau,
                         max_iter=4, tol=0.0, stop_mode='abs')
    assert torch.allclose(stats.abs_trace.squeeze(1), residuals, rtol=1e-14, atol=0)
    assert torch.allclose(z_out, expected[-1], rtol=1e-14, atol=0)


def test_damping_makes_an_oscillating_map_converge():
    f = lambda z: -1.5 * z + 2.5  # noqa: E731  fixed point 1, plain iteration diverges
    z0 = torch.zeros(2, 3, dtype=DTYPE)
    _, plain = solve(f, z0, solver='fixed_point', max_iter=60, tol=1e-10, stop_mode='abs')
    z, damped = solve(f, z0, solver='fixed_point', tau=0.4, max_iter=60, tol=1e-10,
                      stop_mode='abs')
    assert bool(plain.diverged.all())
    assert bool(damped.converged.all())
    assert torch.allclose(z, torch.ones_like(z), atol=1e-9)
