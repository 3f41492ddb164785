import torch

from mdeq_mm.deq import BroydenSolver, solve

from .test_solve import DTYPE, linear_problem


def test_first_step_is_f_of_z0():
    f, z_star = linear_problem(batch=2, dim=5)
    inputs = []

    def recording_f(z):
        inputs.append(z.clone())
        return f(z)

    z0 = torch.randn_like(z_star)
    solve(recording_f, z0, solver='broyden', max_iter=2, tol=0.0)
    assert torch.allclose(inputs[1], f(z0), atol=1e-14, rtol=0)


def test_update_satisfies_the_secant_condition():
    f, z_star = linear_problem(batch=2, dim=5)
    z0 = torch.zeros_like(z_star)
    active = torch.ones(2, dtype=torch.bool)
    solver = BroydenSolver(z0, max_iter=10, memory=4)
    f0 = f(z0)
    z1 = solver.propose(z0, f0, active)
    f1 = f(z1)
    solver.propose(z1, f1, active)
    s, y = z1 - z0, (f1 - z1) - (f0 - z0)
    # the inverse-Jacobian estimate of g = f - z maps the change in g onto the step
    assert torch.allclose(solver._apply(y), s, atol=1e-12, rtol=0)


def test_full_memory_solves_a_linear_problem_within_2d_steps():
    dim = 8
    f, z_star = linear_problem(batch=2, dim=dim)
    z, stats = solve(f, torch.zeros_like(z_star), solver='broyden', max_iter=100, tol=1e-11,
                     check_every=1)
    assert stats.nfe <= 2 * dim + 1
    assert torch.allclose(z, z_star, atol=1e-9, rtol=0)


def test_ring_memory_is_allocated_once_and_still_converges():
    f, z_star = linear_problem(batch=2, dim=12, radius=0.8)
    z0 = torch.zeros_like(z_star)
    solver = BroydenSolver(z0, max_iter=50, memory=3)
    assert solver.us.shape == (2, 12, 3) and solver.vs.shape == (2, 12, 3)
    pointer = solver.us.data_ptr()
    active = torch.ones(2, dtype=torch.bool)
    z = z0
    for _ in range(8):
        z = solver.propose(z, f(z), active)
    assert solver.us.data_ptr() == pointer and solver.n_updates == 7
    z, stats = solve(f, z0, solver='broyden', memory=3, max_iter=300, tol=1e-9)
    assert bool(stats.converged.all())
    assert torch.allclose(z, z_star, atol=1e-7, rtol=0)


def test_degenerate_update_is_skipped_and_counted():
    # a constant residual gives y = 0 after the first step: no curvature information
    z, stats = solve(lambda z: z + 1.0, torch.zeros(2, 3, dtype=DTYPE), solver='broyden',
                     max_iter=4, tol=1e-9)
    assert int(stats.degenerate) == 2 * 2
    assert bool(torch.isfinite(z).all())
