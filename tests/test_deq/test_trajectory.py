"""The trajectory a training solve samples, JFB by name and the training budget."""
import pytest
import torch

from mdeq_mm.deq import BackwardConfig, DEQCore, TrajectoryConfig

from .test_implicit import DTYPE, ToyMultiscale, loss_of, make_inputs, nan_after

# tol=0 never stops a sample, so every solve spends its whole budget
FULL_BUDGET = dict(type='broyden', max_iter=12, tol=0.0)


def recorded(f):
    """``f`` and the list of the (detached) states it is called with."""
    inputs = []

    def wrapped(z):
        inputs.append(tuple(t.detach().clone() for t in z))
        return f(z)

    return wrapped, inputs


def test_jfb_is_the_phantom_gradient_with_one_undamped_step():
    assert BackwardConfig.from_dict(dict(type='jfb')) == BackwardConfig.from_dict(
        dict(type='phantom', k=1, tau=1.0))
    with pytest.raises(ValueError, match=r"type='jfb'.*\['k'\]"):
        BackwardConfig.from_dict(dict(type='jfb', k=2))


@pytest.mark.parametrize('budget', [1, 2, 3, 12, 27])
@pytest.mark.parametrize('n_states', [1, 2, 3])
def test_sample_steps_give_n_states_steps_inside_the_budget(budget, n_states):
    steps = TrajectoryConfig(n_states=n_states).sample_steps(budget)
    assert len(steps) == n_states
    assert all(1 <= s <= max(1, budget - 1) for s in steps)
    assert list(steps) == sorted(steps)


def test_trajectory_config_names_the_bad_key_or_value():
    with pytest.raises(ValueError, match='n_state'):
        TrajectoryConfig.from_dict(dict(n_state=2))
    with pytest.raises(ValueError, match='n_states'):
        TrajectoryConfig(n_states=-1)
    with pytest.raises(ValueError, match='tau'):
        TrajectoryConfig(n_states=1, tau=0.0)


@pytest.mark.parametrize('k, tau', [(1, 1.0), (2, 0.6)])
def test_each_state_is_k_damped_steps_from_the_iterate_at_its_sample_step(k, tau):
    model = ToyMultiscale()
    core = DEQCore(FULL_BUDGET, dict(type='phantom', k=5, tau=0.6),
                   trajectory_cfg=dict(n_states=3, k=k, tau=tau))
    x, z0 = make_inputs()
    f, inputs = recorded(model.bind(x))
    core(f, z0)
    steps = core.trajectory_cfg.sample_steps(FULL_BUDGET['max_iter'])
    assert len(core.last_trajectory) == 3
    for step, state in zip(steps, core.last_trajectory):
        expected = inputs[step]
        for _ in range(k):
            expected = tuple(tau * a + (1 - tau) * b
                             for a, b in zip(model.bind(x)(expected), expected))
        for got, want in zip(state, expected):
            torch.testing.assert_close(got, want)


def test_a_state_sends_gradient_to_the_parameters_only_through_its_own_steps():
    model = ToyMultiscale()
    core = DEQCore(FULL_BUDGET, trajectory_cfg=dict(n_states=2))
    x, z0 = make_inputs()
    f, inputs = recorded(model.bind(x))
    core(f, z0)
    state = core.last_trajectory[0]
    loss_of(state).backward()
    got = [p.grad.clone() for p in model.w.values()]
    model.zero_grad()
    start = inputs[core.trajectory_cfg.sample_steps(FULL_BUDGET['max_iter'])[0]]
    loss_of(model.bind(x)(start)).backward()
    for a, b in zip(got, model.w.values()):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b.grad)


def test_a_solve_that_stops_early_still_gives_n_states_states_from_its_fixed_point():
    model = ToyMultiscale(contraction=0.1)
    core = DEQCore(dict(type='broyden', max_iter=60, tol=1e-6, check_every=1),
                   trajectory_cfg=dict(n_states=3))
    x, z0 = make_inputs()
    out = core(model.bind(x), z0)
    assert core.last_forward_stats.nfe < 15  # before the first sample step
    assert len(core.last_trajectory) == 3
    for state in core.last_trajectory:
        for got, want in zip(state, out):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_no_trajectory_in_eval_without_grad_in_unrolled_mode_or_by_default():
    model = ToyMultiscale()
    x, z0 = make_inputs()
    core = DEQCore(FULL_BUDGET, trajectory_cfg=dict(n_states=2))
    core(model.bind(x), z0, mode='unrolled')
    assert core.last_trajectory is None
    with torch.no_grad():
        core(model.bind(x), z0)
    assert core.last_trajectory is None
    core.eval()
    core(model.bind(x), z0)
    assert core.last_trajectory is None
    plain = DEQCore(FULL_BUDGET)
    plain(model.bind(x), z0)
    assert plain.last_trajectory is None


def test_a_failed_sample_gets_its_detached_fixed_point_in_every_state():
    model = ToyMultiscale()
    core = DEQCore(dict(type='broyden', max_iter=12, tol=0.0), dict(type='phantom', k=2),
                   dict(type='detach'), trajectory_cfg=dict(n_states=2))
    x, z0 = make_inputs()
    core(nan_after(model.bind(x), 3, only_without_grad=True), z0)
    assert core.last_forward_stats.nan.tolist() == [True, False]
    for state in core.last_trajectory:
        assert all(bool(torch.isfinite(t).all()) for t in state)
        loss_of(tuple(t[:1] for t in state)).backward(retain_graph=True)
    assert all(p.grad is None or not p.grad.any() for p in model.w.values())


def test_train_max_iter_sets_the_budget_of_training_calls_only():
    model = ToyMultiscale()
    x, z0 = make_inputs()
    core = DEQCore(FULL_BUDGET, trajectory_cfg=dict(n_states=2))
    core.train_max_iter = 5
    f, inputs = recorded(model.bind(x))
    core(f, z0)
    assert core.last_forward_stats.nfe == 5
    assert len(core.last_trajectory) == 2
    core.eval()
    core(model.bind(x), z0)
    assert core.last_forward_stats.nfe == FULL_BUDGET['max_iter']
