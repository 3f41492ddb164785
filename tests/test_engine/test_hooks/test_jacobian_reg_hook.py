"""JacobianRegHook: loss_jac on the scheduled iterations, with the scheduled weight."""
import numpy as np
import pytest
from mmengine.runner import Runner

from mdeq_mm.engine.hooks import JacobianRegHook


def drawn(seed, iteration, prob):
    """The documented rule: one draw of a generator seeded by (seed, iteration)."""
    return np.random.default_rng((seed, iteration)).random() < prob


@pytest.fixture
def runner(data_root, tmp_path, runner_cfg):
    """A built Runner (not trained) whose train loop sets ``runner.iter``."""
    runner = Runner.from_cfg(runner_cfg(data_root, str(tmp_path)))
    runner.model.train()
    return runner


@pytest.fixture
def batch(runner):
    # the infinite sampler serves one iterator per loader: take the batch once
    return next(iter(runner.train_dataloader))


def loss_calls(runner, batch, hook, iterations):
    """One 'loss' forward per iteration on ``batch``, inside ``hook``'s iteration calls."""
    model = runner.model
    data = model.data_preprocessor(batch, True)
    hook.before_run(runner)
    calls = []
    for i in iterations:
        runner.train_loop._iter = i
        hook.before_train_iter(runner, i)
        calls.append(model(**data, mode='loss'))
        hook.after_train_iter(runner, i)
    hook.after_run(runner)
    return calls


@pytest.mark.parametrize('prob', [0.5, 0.0, 1.0])
def test_loss_jac_frequency_follows_the_seeded_draw(runner, batch, prob):
    hook = JacobianRegHook(weight=0.7, prob=prob, seed=3)
    calls = 40
    losses = loss_calls(runner, batch, hook, range(calls))
    seen = [i for i in range(calls) if 'loss_jac' in losses[i]]
    assert seen == [i for i in range(calls) if drawn(3, i, prob)]
    assert abs(len(seen) - calls * prob) <= 4 * np.sqrt(calls * prob * (1 - prob))
    assert hook.backbone.jacobian_probes == 0


def test_decision_is_reproducible_and_depends_on_the_seed():
    hooks = [JacobianRegHook(weight=1., prob=0.3, seed=seed) for seed in (0, 0, 1)]
    draws = [[h.is_regularized(i) for i in range(1000)] for h in hooks]
    assert draws[0] == draws[1] != draws[2]
    assert abs(sum(draws[0]) - 300) < 4 * np.sqrt(1000 * 0.3 * 0.7)


def test_loss_jac_changes_the_gradient(runner, batch):
    model, backbone = runner.model, runner.model.backbone

    def grads(hook):
        model.zero_grad()
        (losses, ) = loss_calls(runner, batch, hook, [0])
        total, _ = model.parse_losses(losses)
        total.backward()
        return sorted(losses), [p.grad.clone() for p in backbone.parameters()]

    keys_off, without = grads(JacobianRegHook(weight=1., prob=0.))
    keys_again, again = grads(JacobianRegHook(weight=1., prob=0.))
    keys_on, with_jac = grads(JacobianRegHook(weight=1., prob=1.))
    assert 'loss_jac' not in keys_off and 'loss_jac' in keys_on
    assert all(a.allclose(b) for a, b in zip(without, again))  # deterministic otherwise
    assert max((a - b).abs().max() for a, b in zip(without, with_jac)) > 1e-6


def test_schedule_ramp_stop_and_warmup_weight(data_root, tmp_path, runner_cfg, recorder_of):
    hooks = [
        dict(type='DEQWarmupHook', warmup_iters=2),
        dict(type='JacobianRegHook', weight=0.1, prob=1.0, ramp_step=0.2, ramp_interval=2,
             stop_iter=5, warmup_weight=0.05)
    ]
    runner = Runner.from_cfg(runner_cfg(data_root, str(tmp_path), hooks, max_iters=7))
    runner.train()
    records = recorder_of(runner).train
    weights = [0.05, 0.05, 0.3, 0.3, 0.5, 0., 0.]
    assert [r['mode'] for r in records[:3]] == ['unrolled', 'unrolled', 'equilibrium']
    assert [r['hub']['train/jac_weight'] for r in records] == pytest.approx(weights)
    for record, weight in zip(records, weights):
        assert record['probes_after'] == 0
        if weight:
            assert record['outputs']['loss_jac'] == pytest.approx(
                weight * record['jacobian_loss'], rel=1e-5)
        else:
            assert 'loss_jac' not in record['outputs']
            assert record['jacobian_loss'] is None


def test_weight_at():
    hook = JacobianRegHook(weight=1., prob=1., ramp_step=0.5, ramp_interval=10, stop_iter=30)
    assert [hook.weight_at(i, 'equilibrium') for i in (0, 9, 10, 29, 30)] == [1, 1, 1.5, 2, 0]
    assert hook.weight_at(25, 'unrolled') == 2  # no warmup_weight: the schedule
    # the ramp counts from start_iter; nothing before it
    hook = JacobianRegHook(weight=1., prob=1., ramp_step=0.5, ramp_interval=10, start_iter=60)
    assert [hook.weight_at(i, 'equilibrium') for i in (0, 59, 60, 69, 70, 85)] == [0, 0, 1, 1,
                                                                                   1.5, 2]


@pytest.mark.parametrize('kwargs,match', [
    (dict(weight=-1.), 'weight must be in'),
    (dict(prob=1.5), r'prob must be in \[0.0, 1.0\], got 1.5'),
    (dict(prob=None), 'prob must be a number, got None'),
    (dict(ramp_step=0.1), 'ramp_step=0.1 needs a ramp_interval'),
    (dict(ramp_step=-0.1, ramp_interval=5), 'ramp_step must be in'),
    (dict(ramp_interval=0), 'ramp_interval must be an int >= 1, got 0'),
    (dict(start_iter=-1), 'start_iter must be an int >= 0, got -1'),
    (dict(stop_iter=-1), 'stop_iter must be an int >= 0, got -1'),
    (dict(warmup_weight=-0.5), 'warmup_weight must be in'),
    (dict(num_probes=0), 'num_probes must be an int >= 1, got 0'),
    (dict(seed=1.5), 'seed must be an int >= 0, got 1.5'),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        JacobianRegHook(**{'weight': 0.5, 'prob': 0.5, **kwargs})
