import pytest
import torch

from mdeq_mm.deq import solve
from mdeq_mm.deq.anderson import AndersonSolver

from .problems import DTYPE, linear_problem, recording


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


def test_singular_system_falls_back_to_f_and_is_counted():
    # f(z) = z: every stored residual is zero, so the ridged Gram matrix is zero too
    z0 = torch.randn(2, 3, dtype=DTYPE)
    z, stats = solve(lambda z: z.clone(), z0, solver='anderson', max_iter=5, tol=0.0)
    assert int(stats.degenerate) == 2 * 4
    assert torch.equal(z, z0)


def test_iterates_minimise_the_mixed_residual_over_the_history():
    f, z_star = linear_problem(batch=2, dim=6)
    z0 = torch.zeros_like(z_star)
    recording_f, inputs = recording(f)

    solve(recording_f, z0, solver='anderson', memory=3, lam=1e-12, max_iter=6, tol=0.0)
    # the last proposal mixes the images of the 3 latest iterates with the weights that
    # minimise the norm of the mixed residual (a least-squares problem with sum 1)
    zs = torch.stack(inputs[-4:-1], dim=1)
    fs = torch.stack([f(zs[:, i]) for i in range(3)], dim=1)
    gs = fs - zs
    basis = gs[:, :-1] - gs[:, -1:]
    coef = torch.linalg.lstsq(basis.transpose(1, 2), -gs[:, -1:].transpose(1, 2)).solution
    alpha = torch.cat([coef.squeeze(2), 1 - coef.sum(dim=(1, 2)).unsqueeze(1)], dim=1)
    expected = torch.einsum('bn,bnd->bd', alpha, fs)
    assert torch.allclose(inputs[-1], expected, rtol=1e-6, atol=1e-8)


def test_a_residual_not_written_by_the_solver_gives_the_same_iterates():
    # solve() lets the solver write f(z) - z into its history; a caller of propose() may not
    f, z_star = linear_problem(batch=2, dim=6)
    z0 = torch.zeros_like(z_star)
    recording_f, inputs = recording(f)

    solve(recording_f, z0, solver='anderson', memory=3, max_iter=8, tol=0.0)
    solver = AndersonSolver(z0, 8, memory=3)
    active = torch.ones(2, dtype=torch.bool)
    z = z0
    for expected in inputs[1:]:
        fz = f(z)
        z = solver.propose(z, fz, fz - z, active)
        assert torch.equal(z, expected)


def reference_anderson(f, z0, memory, lam, beta, steps):
    """Textbook Anderson (type II): the Gram matrix of the last ``memory`` residuals rebuilt
    and solved at every step."""
    zs, fs = [z0], []
    for _ in range(steps - 1):
        fs.append(f(zs[-1]))
        f_hist = torch.stack(fs[-memory:], dim=1)
        g_hist = f_hist - torch.stack(zs[len(fs) - f_hist.shape[1]:], dim=1)
        gram = g_hist @ g_hist.transpose(1, 2)
        n = gram.shape[1]
        ridge = lam * torch.diagonal(gram, dim1=1, dim2=2).mean(dim=1)
        sol = torch.linalg.solve(gram + ridge[:, None, None] * torch.eye(n, dtype=DTYPE),
                                 torch.ones(gram.shape[0], n, dtype=DTYPE))
        alpha = (sol / sol.sum(dim=1, keepdim=True)).unsqueeze(1)
        zs.append((alpha @ (f_hist - (1.0 - beta) * g_hist)).squeeze(1))
    return torch.stack(zs)


@pytest.mark.parametrize('beta', [1.0, 0.7])
def test_iterates_equal_the_textbook_anderson_after_the_history_wraps(beta):
    f, z_star = linear_problem(batch=3, dim=16)
    z0 = torch.zeros_like(z_star)
    recording_f, inputs = recording(f)

    solve(recording_f, z0, solver='anderson', memory=4, lam=1e-4, beta=beta, max_iter=15,
          tol=0.0)
    expected = reference_anderson(f, z0, memory=4, lam=1e-4, beta=beta, steps=15)
    assert torch.allclose(torch.stack(inputs), expected, rtol=1e-9, atol=1e-12)
