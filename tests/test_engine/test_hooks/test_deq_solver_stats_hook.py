"""DEQSolverStatsHook: solver statistics in scalars.json as window / epoch means, and warnings."""
from types import SimpleNamespace
from unittest.mock import Mock

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from mdeq_mm.engine.hooks import DEQSolverStatsHook

SOLVER_KEYS = ('deq_fwd_steps', 'deq_fwd_rel_res', 'deq_fwd_fallbacks', 'deq_bwd_steps',
               'deq_bwd_rel_res', 'deq_bwd_unconverged')
TRAIN_KEYS = SOLVER_KEYS + ('deq_nonfinite_inputs', )
VAL_KEYS = ('deq_fwd_steps', 'deq_fwd_rel_res', 'deq_fwd_fallbacks', 'deq_nonfinite_inputs')


@pytest.fixture(scope='module')
def stats_run(data_root, tmp_path_factory, runner_cfg, recorder_of, read_scalars, read_log):
    """Warm-up for 2 iterations, 6 in all, logged every 2, validated after 3 and 6."""
    work_dir = str(tmp_path_factory.mktemp('stats_run'))
    hooks = [
        dict(type='DEQWarmupHook', warmup_iters=2),
        dict(type='DEQSolverStatsHook', warn_threshold=1e-12)
    ]
    runner = Runner.from_cfg(
        runner_cfg(data_root, work_dir, hooks, max_iters=6, logger_interval=2, val_interval=3))
    runner.train()
    lines = read_scalars(work_dir)
    return SimpleNamespace(
        records=recorder_of(runner),
        train_lines=[line for line in lines if 'lr' in line],
        val_lines=[line for line in lines if 'mIoU' in line],
        log=read_log(work_dir))


def test_iteration_values_are_batch_means_of_the_solver_stats(stats_run):
    records = stats_run.records.train
    for record in records[:2]:
        assert record['mode'] == 'unrolled'
        assert not any(f'train/{key}' in record['hub'] for key in SOLVER_KEYS)
        assert record['hub']['train/deq_nonfinite_inputs'] == 0
    for record in records[2:]:
        hub = record['hub']
        assert hub['train/deq_fwd_steps'] == pytest.approx(np.mean(record['fwd_steps']))
        assert hub['train/deq_fwd_rel_res'] == pytest.approx(np.mean(record['fwd_rel_res']))
        assert hub['train/deq_bwd_steps'] == pytest.approx(np.mean(record['bwd_steps']))
        assert hub['train/deq_bwd_rel_res'] == pytest.approx(np.mean(record['bwd_rel_res']))
        assert hub['train/deq_fwd_fallbacks'] == 0
        assert hub['train/deq_bwd_unconverged'] == pytest.approx(
            np.mean([res >= 1e-3 for res in record['bwd_rel_res']]))


def test_train_log_has_window_means_only_for_equilibrium_iterations(stats_run, solver_max_iter):
    lines, records = stats_run.train_lines, stats_run.records.train
    assert [line['step'] for line in lines] == [2, 4, 6]
    assert not any(key in lines[0] for key in SOLVER_KEYS)  # iterations 0, 1: unrolled
    for line in lines[1:]:
        window = records[line['step'] - 2:line['step']]
        for key in TRAIN_KEYS:
            expected = np.mean([r['hub'][f'train/{key}'] for r in window])
            assert line[key] == pytest.approx(expected), key
        assert 1 <= line['deq_fwd_steps'] <= solver_max_iter
        assert 1 <= line['deq_bwd_steps'] <= solver_max_iter
        assert line['deq_fwd_rel_res'] >= 0 and line['deq_bwd_rel_res'] >= 0


def test_val_log_has_the_mean_of_each_validation(stats_run, solver_max_iter):
    lines, records = stats_run.val_lines, stats_run.records.val
    assert [line['step'] for line in lines] == [3, 6]
    for line in lines:
        batches = [r for r in records if r['train_iter'] == line['step']]
        assert len(batches) == 2
        steps = [s for r in batches for s in r['fwd_steps']]
        rel_res = [s for r in batches for s in r['fwd_rel_res']]
        assert line['deq_fwd_steps'] == pytest.approx(np.mean(steps))
        assert line['deq_fwd_rel_res'] == pytest.approx(np.mean(rel_res))
        assert 1 <= line['deq_fwd_steps'] <= solver_max_iter
        assert line['deq_fwd_fallbacks'] == 0 and line['deq_nonfinite_inputs'] == 0
        assert 'deq_bwd_steps' not in line


def test_warns_for_each_unconverged_window(stats_run):
    # warn_window defaults to the logger interval: iterations 2-3 and 4-5
    assert stats_run.log.count('DEQ forward solver not converging') == 2
    assert 'relative residual above 1e-12 for the last 2 equilibrium iterations' in stats_run.log


def fake_iteration(hook, runner, rel_res, bwd_stats=None):
    """One training iteration of a stand-in backbone whose forward had ``rel_res``."""
    stats = SimpleNamespace(steps=torch.tensor([3, 4]), rel_res=torch.tensor([rel_res] * 2),
                            failed=torch.tensor([False, False]))
    hook.backbone = SimpleNamespace(
        last_forward_stats=stats,
        last_backward_stats=bwd_stats,
        last_nonfinite_input=torch.tensor([False, False]))
    hook.after_train_iter(runner, 0)
    runner.iter += 1


def fake_runner(name):
    return SimpleNamespace(iter=0, logger=Mock(), message_hub=MessageHub(name))


def test_warns_only_when_the_whole_window_is_above_threshold():
    hook = DEQSolverStatsHook(warn_threshold=0.05, warn_window=3)
    runner = fake_runner('warn_window_test')
    for rel_res in [0.1, 0.2, 0.3, 0.1, 0.01, 0.2, 0.06, 0.07, 0.08, 0.5]:
        fake_iteration(hook, runner, rel_res)
    assert runner.logger.warning.call_count == 2
    message = runner.logger.warning.call_args_list[0].args[0]
    assert 'mean 0.2, min 0.1, max 0.3' in message
    assert runner.message_hub.get_scalar('train/deq_fwd_steps').current() == 3.5


@pytest.fixture
def runner_with_users_log_setting(data_root, tmp_path, runner_cfg):
    """``runner_with_users_log_setting(data_src)``: a Runner whose ``log_processor`` takes the
    max of ``data_src`` over 5 iterations, after ``DEQSolverStatsHook.before_run``."""

    def build(data_src):
        cfg = runner_cfg(data_root, str(tmp_path))
        cfg.log_processor = dict(
            by_epoch=False, custom_cfg=[dict(data_src=data_src, method_name='max', window_size=5)])
        runner = Runner.from_cfg(cfg)
        DEQSolverStatsHook().before_run(runner)
        return runner

    return build


def test_keeps_a_users_log_processor_setting(runner_with_users_log_setting):
    runner = runner_with_users_log_setting('deq_fwd_rel_res')
    custom = {cfg['data_src']: cfg for cfg in runner.log_processor.custom_cfg}
    assert set(custom) == set(TRAIN_KEYS)
    assert custom['deq_fwd_rel_res']['method_name'] == 'max'
    assert custom['deq_fwd_steps'] == dict(
        data_src='deq_fwd_steps', method_name='mean', window_size=1)


def test_nan_images_are_counted_flagged_in_predictions_and_kept_out_of_the_model(
        data_root, tmp_path, runner_cfg, recorder_of, read_scalars, read_log):
    hooks = [
        dict(type='DEQSolverStatsHook', warn_threshold=None),
        dict(type='NaNImageHook', train_iters=[1], val_batches=[1])
    ]
    cfg = runner_cfg(data_root, str(tmp_path), hooks, max_iters=2, val_interval=2)
    cfg.optim_wrapper.type = 'SkipNonFiniteOptimWrapper'
    runner = Runner.from_cfg(cfg)
    runner.train()
    records = recorder_of(runner)
    assert [r['hub']['train/deq_nonfinite_inputs'] for r in records.train] == [0, 0.5]
    assert [r['hub']['train/skipped_steps'] for r in records.train] == [0, 0]
    assert [r['failed_flags'] for r in records.val] == [[False], [True]]
    (val_line, ) = [line for line in read_scalars(str(tmp_path)) if 'mIoU' in line]
    assert val_line['deq_nonfinite_inputs'] == 0.5 and val_line['deq_fwd_fallbacks'] == 0
    assert 'val: of 2 samples, 1 had NaN/Inf values' in read_log(str(tmp_path))
    assert all(torch.isfinite(t).all() for t in runner.model.state_dict().values())


def test_predictions_of_an_image_classifier_carry_the_flag(mdeq_backbone_cfg):
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    cfg = dict(
        type='ImageClassifier',
        backbone=mdeq_backbone_cfg(norm_cfg=dict(type='GN', num_groups=4)),
        neck=dict(type='MDEQClsNeck', in_channels=(8, 16), head_channels=(4, 8),
                  final_channels=16),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=16))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg).eval()
    runner = SimpleNamespace(model=model, hooks=[], logger=Mock(),
                             log_processor=SimpleNamespace(window_size=1, custom_cfg=[]))
    DEQSolverStatsHook().before_run(runner)
    inputs = torch.rand(2, 3, 32, 32)
    inputs[0, 1, 2, 3] = float('inf')
    with torch.no_grad(), pytest.warns(UserWarning, match='MDEQ got 1 of 2 image'):
        preds = model(inputs, [DataSample(), DataSample()], mode='predict')
    assert [pred.metainfo['deq_failed'] for pred in preds] == [True, False]


def test_warns_when_the_log_processor_names_the_removed_fallback_key(
        runner_with_users_log_setting, tmp_path, read_log):
    runner_with_users_log_setting('deq_fallbacks')
    assert "names 'deq_fallbacks', which is no longer logged" in read_log(str(tmp_path))


@pytest.mark.parametrize('kwargs,match', [
    (dict(warn_threshold=-0.1), 'warn_threshold'),
    (dict(warn_threshold='high'), 'warn_threshold'),
    (dict(warn_window=0), 'warn_window must be an int >= 1, got 0'),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DEQSolverStatsHook(**kwargs)
