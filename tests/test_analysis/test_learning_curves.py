"""Learning curves are read back from mmengine's scalar records and plotted."""
import json
import math

import pytest

from mdeq_mm.analysis.learning_curves import (curve_from_scalars, plot_learning_curves,
                                              read_scalars)

RECORDS = [
    dict(lr=1e-3, loss=2.3, time=1.0, iter=10, step=10),
    {'lr': 1e-3, 'loss': 1.1, 'time': 3.0, 'iter': 20, 'step': 20,
     'train/deq_fwd_rel_res': 0.02, 'train/deq_fwd_steps': 9.0},
    {'accuracy/top1': 60.0, 'val/deq_fwd_rel_res': 0.01, 'step': 20},
    {'lr': 1e-3, 'loss': 0.5, 'time': 2.0, 'iter': 30, 'step': 30,
     'train/deq_fwd_rel_res': 0.01, 'train/deq_fwd_steps': 8.0},
    {'accuracy/top1': 96.0, 'step': 30},
]


def test_training_and_validation_records_are_split_by_iteration():
    curve = curve_from_scalars('mdeq', RECORDS, 'accuracy/top1')
    assert curve.train_iters == [10, 20, 30]
    assert curve.loss == [2.3, 1.1, 0.5]
    assert curve.val_iters == [20, 30]
    assert curve.metric == [60.0, 96.0]
    assert curve.sec_per_iter == 2.0
    # training time up to each validation: 10 iterations at 1 s, then 10 at 3 s, then 10 at 2 s
    assert curve.train_seconds == [40.0, 60.0]
    # the unrolled warm-up has no solve: its solver entries are NaN, not zero
    assert math.isnan(curve.solver['deq_fwd_rel_res'][0])
    assert curve.solver['deq_fwd_steps'][1:] == [9.0, 8.0]
    assert 'deq_bwd_steps' not in curve.solver
    # the validation solves' statistics, at the validations (NaN where one was not logged)
    assert curve.val_solver['deq_fwd_rel_res'][0] == 0.01
    assert math.isnan(curve.val_solver['deq_fwd_rel_res'][1])
    assert 'deq_fwd_steps' not in curve.val_solver


def test_first_iteration_reaching_a_target():
    curve = curve_from_scalars('mdeq', RECORDS, 'accuracy/top1')
    assert curve.first_iter_reaching(95.0) == 30
    assert curve.first_iter_reaching(50.0) == 20
    assert curve.first_iter_reaching(99.0) is None


def test_loss_rise_and_metric_at_a_training_time():
    curve = curve_from_scalars('mdeq', RECORDS, 'accuracy/top1')
    assert curve.max_loss_rise() == 0.0
    assert curve.metric_at_seconds(39.0) != curve.metric_at_seconds(39.0)  # NaN: none yet
    assert curve.metric_at_seconds(40.0) == 60.0
    assert curve.metric_at_seconds(50.0) == pytest.approx(78.0)  # half-way between validations
    assert curve.metric_at_seconds(60.0) == 96.0
    assert curve.metric_at_seconds(600.0) == 96.0  # the run ended with its final model
    jump = curve_from_scalars('mdeq', [*RECORDS, dict(loss=0.75, time=1.0, iter=40, step=40)],
                              'accuracy/top1')
    assert jump.max_loss_rise() == pytest.approx(0.5)


def test_missing_metric_names_the_logged_keys():
    with pytest.raises(ValueError, match="no validation record with 'mIoU'.*accuracy/top1"):
        curve_from_scalars('mdeq', RECORDS, 'mIoU')


def test_validation_logged_by_epoch_in_an_iteration_run_is_refused():
    by_epoch = [r if 'loss' in r else {**r, 'step': 0} for r in RECORDS]
    with pytest.raises(ValueError, match='log_metric_by_epoch=False'):
        curve_from_scalars('mdeq', by_epoch, 'accuracy/top1')


def test_scalars_are_read_from_the_newest_run(tmp_path):
    for stamp, loss in (('20260101_000000', 9.0), ('20260102_000000', 1.0)):
        (tmp_path / stamp / 'vis_data').mkdir(parents=True)
        (tmp_path / stamp / 'vis_data' / 'scalars.json').write_text(
            json.dumps(dict(loss=loss, time=1.0, iter=1, step=1)) + '\n')
    assert read_scalars(str(tmp_path))[0]['loss'] == 1.0
    with pytest.raises(FileNotFoundError, match='no vis_data/scalars.json'):
        read_scalars(str(tmp_path / 'nothing'))


def test_plot_is_written_with_and_without_solver_statistics(tmp_path):
    mdeq = curve_from_scalars('mdeq', RECORDS, 'accuracy/top1')
    plain = curve_from_scalars('resnet', [r for r in RECORDS if 'deq_fwd_steps' not in r],
                               'accuracy/top1')
    plot_learning_curves([mdeq, plain], str(tmp_path / 'curves.png'), 'test')
    plot_learning_curves([plain], str(tmp_path / 'plain.png'), 'test')
    assert (tmp_path / 'curves.png').stat().st_size > 1000
    assert (tmp_path / 'plain.png').stat().st_size > 1000
