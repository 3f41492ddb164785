"""FixedPointCorrectionHook: the model's own losses on sampled states, in stock mmseg and
mmpretrain models."""
from types import SimpleNamespace

import pytest
import torch
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.registry import MODELS as CLS_MODELS
from mmpretrain.structures import DataSample

from mdeq_mm.engine.hooks import FixedPointCorrectionHook
from mdeq_mm.models.losses import correction_weights


def loss_dict(model, data, hook, seed=0):
    """The loss dict of one training forward of ``model`` with ``hook`` armed."""
    fake_runner = SimpleNamespace(model=model)
    hook.before_run(fake_runner)
    try:
        torch.manual_seed(seed)
        return model(**data, mode='loss')
    finally:
        hook.after_run(fake_runner)


@pytest.fixture
def segmentor(data_root, tmp_path, runner_cfg):
    """A stock EncoderDecoder with the tiny MDEQ and one training batch, preprocessed."""
    runner = Runner.from_cfg(runner_cfg(data_root, str(tmp_path)))
    model = runner.model.train()
    data = model.data_preprocessor(next(iter(runner.train_dataloader)), True)
    return model, data


@pytest.fixture
def classifier(mdeq_backbone_cfg):
    """A stock ImageClassifier with the tiny MDEQ, MDEQClsNeck and a linear head; a batch."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = CLS_MODELS.build(
            dict(type='ImageClassifier',
                 backbone=mdeq_backbone_cfg(),
                 neck=dict(type='MDEQClsNeck', in_channels=(8, 16), head_channels=(4, 8),
                           final_channels=16),
                 head=dict(type='LinearClsHead', num_classes=3, in_channels=16))).train()
    samples = [DataSample().set_gt_label(i % 3) for i in range(4)]
    return model, dict(inputs=torch.rand(4, 3, 32, 32), data_samples=samples)


@pytest.mark.parametrize('toolbox, key', [('segmentor', 'decode.loss_ce'),
                                          ('classifier', 'loss')])
def test_the_loss_dict_has_one_weighted_term_per_state_and_head(toolbox, key, request):
    model, data = request.getfixturevalue(toolbox)
    exp = loss_dict(model, data, FixedPointCorrectionHook(n_states=3, gamma=0.5))
    const = loss_dict(model, data, FixedPointCorrectionHook(n_states=3, weighting='constant'))
    terms = [f'fpc{k}.{key}' for k in range(3)]
    assert [name for name in exp if name.startswith('fpc')] == terms
    for term, weight in zip(terms, correction_weights(3, gamma=0.5)):
        torch.testing.assert_close(exp[term], weight * const[term])
    assert [0.125, 0.25, 0.5] == correction_weights(3, gamma=0.5)
    assert model.backbone.deq.trajectory_cfg.n_states == 0  # restored after the run


def test_the_auxiliary_head_is_corrected_too(data_root, tmp_path, runner_cfg):
    cfg = runner_cfg(data_root, str(tmp_path))
    cfg.model.auxiliary_head = dict(cfg.model.decode_head, in_index=0, in_channels=8,
                                    channels=8, input_transform=None)
    runner = Runner.from_cfg(cfg)
    model = runner.model.train()
    data = model.data_preprocessor(next(iter(runner.train_dataloader)), True)
    losses = loss_dict(model, data, FixedPointCorrectionHook(n_states=1))
    assert {'fpc0.decode.loss_ce', 'fpc0.aux.loss_ce'} <= set(losses)


@pytest.mark.parametrize('toolbox', ['segmentor', 'classifier'])
def test_each_term_sends_gradient_to_the_backbone(toolbox, request):
    model, data = request.getfixturevalue(toolbox)
    losses = loss_dict(model, data, FixedPointCorrectionHook(n_states=2))
    terms = [name for name in losses if name.startswith('fpc')]
    for term in terms:
        model.zero_grad()
        torch.as_tensor(losses[term]).sum().backward(retain_graph=True)
        for name in ('stem.0.weight', 'injection.0.weight'):
            grad = model.backbone.get_parameter(name).grad
            assert grad is not None and grad.abs().sum() > 0, (term, name)
        f_grads = [p.grad for p in model.backbone.f.parameters() if p.grad is not None]
        assert f_grads and any(g.abs().sum() > 0 for g in f_grads), term


def test_nothing_is_added_in_the_unrolled_mode_or_outside_the_loss_mode(segmentor):
    model, data = segmentor
    model.backbone.deq_mode = 'unrolled'
    losses = loss_dict(model, data, FixedPointCorrectionHook(n_states=2))
    assert not any(name.startswith('fpc') for name in losses)
    model.backbone.deq_mode = 'equilibrium'
    hook = FixedPointCorrectionHook(n_states=2)
    hook.before_run(SimpleNamespace(model=model))
    out = model(data['inputs'], data['data_samples'], mode='tensor')
    hook.after_run(SimpleNamespace(model=model))
    assert isinstance(out, torch.Tensor)


def test_training_with_the_skip_wrapper_logs_every_term_and_a_nan_image_keeps_them_finite(
        tmp_path_factory, data_root, runner_cfg, read_scalars):
    work_dir = str(tmp_path_factory.mktemp('fpc_run'))
    cfg = runner_cfg(data_root, work_dir, max_iters=3)
    cfg.custom_hooks = [dict(type='FixedPointCorrectionHook', n_states=2),
                        dict(type='NaNImageHook', train_iters=[1])]
    cfg.optim_wrapper.type = 'SkipNonFiniteOptimWrapper'
    runner = Runner.from_cfg(cfg)
    runner.train()
    lines = [line for line in read_scalars(work_dir) if 'lr' in line]
    assert len(lines) == 3
    for line in lines:
        assert {'fpc0.decode.loss_ce', 'fpc1.decode.loss_ce'} <= set(line)
        assert all(torch.isfinite(torch.tensor(line[f'fpc{k}.decode.loss_ce'])) for k in (0, 1))
    # the MDEQ replaces the NaN image by zeros, so no step needs skipping
    assert [line['skipped_steps'] for line in lines] == [0, 0, 0]
    assert all(torch.isfinite(t).all() for t in runner.model.state_dict().values())


def test_with_prob_only_the_drawn_iterations_are_corrected(segmentor):
    model, data = segmentor
    hook = FixedPointCorrectionHook(n_states=1, prob=0.5, seed=3)
    drawn = [hook.corrects(i) for i in range(200)]
    assert 70 < sum(drawn) < 130
    # the draw depends only on (seed, iteration): every rank and a resumed run repeat it
    assert drawn == [FixedPointCorrectionHook(n_states=1, prob=0.5, seed=3).corrects(i)
                     for i in range(200)]
    assert drawn != [FixedPointCorrectionHook(n_states=1, prob=0.5, seed=4).corrects(i)
                     for i in range(200)]
    runner = SimpleNamespace(model=model, iter=0)
    hook.before_run(runner)
    try:
        for iteration in (drawn.index(True), drawn.index(False)):
            runner.iter = iteration
            hook.before_train_iter(runner, 0)
            losses = model(**data, mode='loss')
            assert ('fpc0.decode.loss_ce' in losses) == drawn[iteration]
    finally:
        hook.after_run(runner)
    assert model.backbone.deq.trajectory_cfg.n_states == 0


@pytest.mark.parametrize('kwargs,match', [
    (dict(n_states=0), 'n_states must be an int >= 1, got 0'),
    (dict(gamma=0.0), 'gamma must be in'),
    (dict(weighting='linear'), "weighting='linear' is not valid"),
    (dict(k=0), 'k must be an int >= 1, got 0'),
    (dict(tau=1.5), 'tau must be in'),
    (dict(prob=0.0), 'prob must be in'),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FixedPointCorrectionHook(**kwargs)
