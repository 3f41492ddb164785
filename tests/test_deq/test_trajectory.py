"""The trajectory a training solve samples, JFB by name and the training budget."""
import pytest
import torch

from mdeq_mm.deq import BackwardConfig, DEQCore, TrajectoryConfig
from mdeq_mm.deq.capture import CapturingMap

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
    core(nan_after(model.bind(x), 3, only_in_solve=True), z0)
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




@pytest.mark.parametrize('backward, k_extra', [(dict(type='jfb'), 0),
                                               (dict(type='phantom', k=3, tau=0.6), 2),
                                               (dict(type='implicit'), 0)])
@pytest.mark.parametrize('ending', ['budget', 'tolerance', 'callback'])
def test_the_first_differentiable_steps_reuse_the_solve_s_own_evaluations(
        backward, k_extra, ending, monkeypatch):
    """The output's first step (when the solve ends at an evaluation where it may stop) and
    each sampled state's step are the solve's own evaluations: fewer calls of f, the same
    values and gradients as evaluating them again."""
    budget, n_states = 12, 2
    model = ToyMultiscale()
    x, z0 = make_inputs()
    # tol=1e-2: every sample converges within 4 evaluations, where the solve checks its exit
    tol = 1e-2 if ending == 'tolerance' else 0.0
    callback = (lambda state: state.step == 3) if ending == 'callback' else None

    def run(n_states):
        model.zero_grad()
        for t in x:
            t.grad = None
        core = DEQCore(dict(type='anderson', max_iter=budget, tol=tol), backward,
                       trajectory_cfg=dict(n_states=n_states))
        f, inputs = recorded(model.bind(x))
        out = core(f, z0, callback=callback)
        return core, inputs, out

    def loss_and_grads(out, states):
        loss = loss_of(out) + sum(loss_of(state, seed=3 + i) for i, state in enumerate(states))
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.w.values()] +
                         [t.grad.flatten() for t in x])

    core, inputs, out = run(n_states)
    nfe = core.last_forward_stats.nfe
    grads = loss_and_grads(out, core.last_trajectory)
    steps = core.trajectory_cfg.sample_steps(budget)
    if ending == 'budget':
        assert core.last_forward_stats.best_step.tolist() == [budget - 1] * 2
        assert len(inputs) == budget + k_extra
    elif ending == 'tolerance':  # both states sampled after the stop are z*'s kept evaluation
        assert nfe == 4 and steps[0] >= nfe
        assert len(inputs) == nfe + k_extra
    else:  # evaluation 2 is no exit check: the output and both states evaluate z* anew
        assert nfe == 3 and steps[0] >= nfe
        assert len(inputs) == nfe + 1 + k_extra + n_states
    # reference: the output evaluated anew from z*, each state f of the iterate it samples
    z_star = inputs[nfe - 1]
    starts = [inputs[step] if step < nfe else z_star for step in steps]
    monkeypatch.setattr(CapturingMap, 'end_at', lambda self, z_star, nfe: None)
    _, ref_inputs, ref_out = run(0)
    assert len(ref_inputs) == nfe + 1 + k_extra
    ref_grads = loss_and_grads(ref_out, [model.bind(x)(start) for start in starts])
    for got, want in zip(out, ref_out):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(grads, ref_grads)
