"""Warm starts of the MDEQ backbone: a given start state per image, in evaluation only."""
import pytest
import torch

from mdeq_mm.deq import SolverConfig
from mdeq_mm.models import MDEQ

TINY = dict(num_channels=(8, 16), expansion=2)
# A relative residual an untrained MDEQ reaches in a few Broyden steps from zeros (it stalls
# well above 1e-3 at initialization, see MDEQ_SPEC §5).
LOOSE_TOL = 0.9


def tiny_mdeq(tol=LOOSE_TOL, max_iter=30, seed=0):
    torch.manual_seed(seed)
    return MDEQ(arch=TINY, forward_solver=dict(type='broyden', max_iter=max_iter, tol=tol)).eval()


def far_state(like, seed=1):
    """A state far from any equilibrium: its first residual is worse than a cold start's."""
    gen = torch.Generator().manual_seed(seed)
    return tuple(1e3 * torch.randn(z.shape, generator=gen) for z in like)


@torch.no_grad()
def test_warm_start_from_the_fixed_point_converges_in_one_step():
    model = tiny_mdeq(tol=0.0, max_iter=30)
    x = torch.rand(2, 3, 32, 32)
    z_star = model(x)
    reached = model.last_forward_stats.rel_res
    # the tolerance the cold solve reached, with room for rounding when f(z*) is recomputed
    model.deq.forward_cfg = SolverConfig(type='broyden', max_iter=30,
                                         tol=1.5 * float(reached.max()))
    model(x)
    assert (model.last_forward_stats.steps > 1).all()
    warm = model(x, init_state=z_star)
    assert model.last_forward_stats.steps.tolist() == [1, 1]
    assert model.last_f_evals.tolist() == [1, 1]
    assert not model.last_cold_restart.any()
    for out, z in zip(warm, z_star):
        torch.testing.assert_close(out, z)


@torch.no_grad()
def test_a_warm_start_worse_than_cold_falls_back_to_a_cold_start():
    model = tiny_mdeq()
    x = torch.rand(2, 3, 32, 32)
    cold = model(x)
    cold_steps = model.last_forward_stats.steps
    start = tuple(torch.cat([z[:1], far[1:]]) for z, far in zip(cold, far_state(cold)))
    out = model(x, init_state=start)
    assert model.last_cold_restart.tolist() == [False, True]
    # image 1 restarted from zeros: the cold result, one evaluation of f later
    for o, c in zip(out, cold):
        torch.testing.assert_close(o[1], c[1])
    assert int(model.last_f_evals[1]) == int(cold_steps[1]) + 1
    # image 0 kept its warm start, already an iterate of the cold solve
    for o, c in zip(out, cold):
        torch.testing.assert_close(o[0], c[0])


@torch.no_grad()
def test_an_all_zero_start_is_a_cold_start():
    model = tiny_mdeq()
    x = torch.rand(2, 3, 32, 32)
    cold = model(x)
    out = model(x, init_state=tuple(torch.zeros_like(z) for z in cold))
    assert not model.last_cold_restart.any()
    assert model.last_f_evals.tolist() == model.last_forward_stats.steps.tolist()
    for o, c in zip(out, cold):
        torch.testing.assert_close(o, c)


@torch.no_grad()
def test_results_without_a_start_state_are_unchanged():
    model = tiny_mdeq()
    x = torch.rand(1, 3, 32, 32)
    f, z0 = model.fixed_point_problem(x)
    expected = model.deq(f, z0)
    out = model(x)
    assert model.last_cold_restart is None
    for o, e in zip(out, expected):
        assert torch.equal(o, e)


def test_training_refuses_a_start_state():
    model = tiny_mdeq().train()
    x = torch.rand(1, 3, 32, 32)
    start = model.eval()(x)
    with pytest.raises(ValueError, match='evaluation only'):
        model.train()(x, init_state=start)


@torch.no_grad()
def test_a_start_state_of_the_wrong_shape_is_named():
    model = tiny_mdeq()
    start = model(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r'\(1, 8, 16, 16\)'):
        model(torch.rand(1, 3, 64, 64), init_state=start)
