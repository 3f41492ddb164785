"""The solver statistics in scalars.json and the text log as window / evaluation means under
distinct train/val names, with and without DEQSolverStatsHook, and the warnings."""
import re
from types import SimpleNamespace
from unittest.mock import Mock, patch

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from mdeq_mm.engine.hooks import DEQSolverStatsHook
from mdeq_mm.models.backbones import solver_stats_reporter
from mdeq_mm.models.backbones.solver_stats_reporter import SolverStatsReporter

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


def batch_mean(values):
    return float(np.mean(values))


def test_train_log_has_window_means_only_for_equilibrium_iterations(stats_run, solver_max_iter):
    lines, records = stats_run.train_lines, stats_run.records.train
    assert [line['step'] for line in lines] == [2, 4, 6]
    assert not any(f'train/{key}' in lines[0] for key in SOLVER_KEYS)  # iters 0, 1: unrolled
    assert lines[0]['train/deq_nonfinite_inputs'] == 0
    for line in lines[1:]:
        window = records[line['step'] - 2:line['step']]
        expected = {
            'deq_fwd_steps': np.mean([batch_mean(r['fwd_steps']) for r in window]),
            'deq_fwd_rel_res': np.mean([batch_mean(r['fwd_rel_res']) for r in window]),
            'deq_bwd_steps': np.mean([batch_mean(r['bwd_steps']) for r in window]),
            'deq_bwd_rel_res': np.mean([batch_mean(r['bwd_rel_res']) for r in window]),
            'deq_bwd_unconverged': np.mean(
                [batch_mean([res >= 1e-3 for res in r['bwd_rel_res']]) for r in window]),
            'deq_fwd_fallbacks': 0,
            'deq_nonfinite_inputs': 0,
        }
        for key, value in expected.items():
            assert line[f'train/{key}'] == pytest.approx(value), key
        assert 1 <= line['train/deq_fwd_steps'] <= solver_max_iter
        assert 1 <= line['train/deq_bwd_steps'] <= solver_max_iter
        assert not any(key.startswith('val/') or key.startswith('deq_') for key in line)


def test_val_log_has_the_mean_of_each_validation(stats_run, solver_max_iter):
    lines, records = stats_run.val_lines, stats_run.records.val
    assert [line['step'] for line in lines] == [3, 6]
    for line in lines:
        batches = [r for r in records if r['train_iter'] == line['step']]
        assert len(batches) == 2
        steps = [s for r in batches for s in r['fwd_steps']]
        rel_res = [s for r in batches for s in r['fwd_rel_res']]
        assert line['val/deq_fwd_steps'] == pytest.approx(np.mean(steps))
        assert line['val/deq_fwd_rel_res'] == pytest.approx(np.mean(rel_res))
        assert 1 <= line['val/deq_fwd_steps'] <= solver_max_iter
        assert line['val/deq_fwd_fallbacks'] == 0 and line['val/deq_nonfinite_inputs'] == 0
        assert not any(key.startswith('train/') or key.startswith('deq_') for key in line)
        assert 'val/deq_bwd_steps' not in line


def test_the_text_log_names_train_and_val_statistics_apart(stats_run):
    assert re.search(r'Iter\(train\) \[4/6\].*train/deq_fwd_steps: ', stats_run.log)
    assert re.search(r'Iter\(val\) \[2/2\].*val/deq_fwd_steps: ', stats_run.log)


def test_an_unconverged_run_warns_with_back_off(stats_run):
    # windows of 2 equilibrium iterations (the logger interval): 2-3 warns, 4-5 is skipped
    assert stats_run.log.count('DEQ forward solver not converging') == 1
    assert 'relative residual above 1e-12 for the last 2 equilibrium iterations' in stats_run.log


def test_the_backbone_logs_its_statistics_without_any_hook(data_root, tmp_path, runner_cfg,
                                                            read_scalars):
    runner = Runner.from_cfg(runner_cfg(data_root, str(tmp_path), max_iters=4, logger_interval=2,
                                        val_interval=4))
    runner.train()
    lines = read_scalars(str(tmp_path))
    train = [line for line in lines if 'lr' in line]
    (val, ) = [line for line in lines if 'mIoU' in line]
    assert len(train) == 2
    assert all(f'train/{key}' in line for key in TRAIN_KEYS for line in train)
    assert all(f'val/{key}' in val for key in VAL_KEYS)


@pytest.fixture
def train_loop_hub():
    """A MessageHub in the 'train' stage of a loop, made the current one."""
    hub = MessageHub.get_instance(f'reporter_test_{len(MessageHub._instance_dict)}')
    hub.update_info('loop_stage', 'train')
    return hub


def forward_stats(rel_res):
    return SimpleNamespace(steps=torch.tensor([3, 4]), rel_res=torch.tensor([rel_res] * 2),
                           failed=torch.tensor([False, False]))


def test_warns_only_when_a_whole_window_is_above_threshold_then_backs_off(train_loop_hub):
    reporter = SolverStatsReporter(window=3, warn_threshold=0.05)
    no_nan = torch.tensor([False, False])
    rel_res = [0.1, 0.2, 0.3,  # warns
               0.1, 0.01, 0.2,  # converged once: back-off reset
               0.06, 0.07, 0.08,  # warns
               0.5, 0.5, 0.5,  # skipped (gap 1)
               0.5, 0.5, 0.5,  # warns (then gap 2)
               0.5, 0.5, 0.5, 0.5, 0.5, 0.5]  # skipped
    with patch.object(solver_stats_reporter, 'print_log') as log:
        for value in rel_res:
            reporter.report_forward(True, no_nan, forward_stats(value))
        for _ in range(30):  # unrolled iterations: no forward solve, never a warning
            reporter.report_forward(True, no_nan, None)
    assert log.call_count == 3
    assert 'mean 0.2, min 0.1, max 0.3' in log.call_args_list[0].args[0]
    assert train_loop_hub.get_scalar('train/train/deq_fwd_steps').current() == 3.5


def test_nothing_is_reported_outside_a_loop_or_in_another_mode(train_loop_hub):
    reporter = SolverStatsReporter()
    no_nan = torch.tensor([False, False])
    reporter.report_forward(False, no_nan, forward_stats(0.1))  # eval forward in training
    train_loop_hub.pop_info('loop_stage')
    reporter.report_forward(True, no_nan, forward_stats(0.1))
    assert not train_loop_hub.log_scalars


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
    assert [r['hub']['train/train/deq_nonfinite_inputs'] for r in records.train] == [0, 0.5]
    assert [r['hub']['train/skipped_steps'] for r in records.train] == [0, 0]
    assert [r['failed_flags'] for r in records.val] == [[False], [True]]
    (val_line, ) = [line for line in read_scalars(str(tmp_path)) if 'mIoU' in line]
    assert val_line['val/deq_nonfinite_inputs'] == 0.5 and val_line['val/deq_fwd_fallbacks'] == 0
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


@pytest.mark.parametrize('kwargs,match', [
    (dict(warn_threshold=-0.1), 'warn_threshold'),
    (dict(warn_threshold='high'), 'warn_threshold'),
    (dict(warn_window=0), 'warn_window must be an int >= 1, got 0'),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DEQSolverStatsHook(**kwargs)
