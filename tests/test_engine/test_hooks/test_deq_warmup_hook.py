"""DEQWarmupHook: unrolled for the first iterations, equilibrium after, also across a resume."""
import pytest
from mmengine.runner import Runner

from mdeq_mm.engine.hooks import DEQWarmupHook


def test_mode_switches_at_warmup_iters(data_root, tmp_path, runner_cfg, recorder_of, read_log):
    cfg = runner_cfg(data_root, str(tmp_path), [dict(type='DEQWarmupHook', warmup_iters=3)],
                     max_iters=5)
    runner = Runner.from_cfg(cfg)
    runner.train()
    records = recorder_of(runner).train
    assert [r['mode'] for r in records] == ['unrolled'] * 3 + ['equilibrium'] * 2
    # the backbone really ran that way: no solver statistics while unrolled
    assert [r['fwd_steps'] is None for r in records] == [True] * 3 + [False] * 2
    log = read_log(str(tmp_path))
    assert 'training starts at iter 0 in unrolled mode' in log
    assert log.count('switched to equilibrium mode at iter 3') == 1


@pytest.mark.parametrize('warmup_iters,config_mode,expected', [
    (3, 'equilibrium', ['unrolled', 'equilibrium', 'equilibrium']),
    (1, 'unrolled', ['equilibrium'] * 3),
])
def test_resumed_run_lands_in_the_mode_of_its_iteration(data_root, tmp_path, warmup_iters,
                                                        config_mode, expected, runner_cfg,
                                                        recorder_of, read_log, mdeq_backbone_cfg):
    hooks = [dict(type='DEQWarmupHook', warmup_iters=warmup_iters)]
    backbone = mdeq_backbone_cfg(deq_mode=config_mode)
    first_dir, resumed_dir = str(tmp_path / 'first'), str(tmp_path / 'resumed')
    Runner.from_cfg(
        runner_cfg(data_root, first_dir, hooks, max_iters=2, checkpoint_interval=2,
                   backbone=backbone)).train()
    resumed = Runner.from_cfg(
        runner_cfg(data_root, resumed_dir, hooks, max_iters=5, backbone=backbone,
                   load_from=str(tmp_path / 'first' / 'iter_2.pth'), resume=True))
    resumed.train()
    records = recorder_of(resumed).train
    assert [r['iter'] for r in records] == [2, 3, 4]
    assert [r['mode'] for r in records] == expected
    first_mode = 'unrolled' if warmup_iters > 2 else 'equilibrium'
    assert f'training starts at iter 2 in {first_mode} mode' in read_log(resumed_dir)


def test_warmup_ratio_scales_with_the_length_of_the_run(data_root, tmp_path, runner_cfg,
                                                         recorder_of, read_log):
    cfg = runner_cfg(data_root, str(tmp_path), [dict(type='DEQWarmupHook', warmup_ratio=0.4)],
                     max_iters=5)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert [r['mode'] for r in recorder_of(runner).train] == ['unrolled'] * 2 + ['equilibrium'] * 3
    assert 'equilibrium from iter 2' in read_log(str(tmp_path))


def test_a_warmup_longer_than_the_run_is_reported(data_root, tmp_path, runner_cfg, read_log):
    cfg = runner_cfg(data_root, str(tmp_path), [dict(type='DEQWarmupHook', warmup_iters=10)],
                     max_iters=2)
    Runner.from_cfg(cfg).train()
    assert 'warmup_iters=10 covers the whole run of 2 iterations' in read_log(str(tmp_path))


@pytest.mark.parametrize('warmup_iters', [-1, 2.5, True])
def test_invalid_warmup_iters(warmup_iters):
    with pytest.raises(ValueError, match=f'warmup_iters must be an int >= 0, got {warmup_iters}'):
        DEQWarmupHook(warmup_iters)


@pytest.mark.parametrize('warmup_ratio', [-0.1, 1.5, '0.5'])
def test_invalid_warmup_ratio(warmup_ratio):
    with pytest.raises(ValueError, match=f'warmup_ratio must be .*got {warmup_ratio!r}'):
        DEQWarmupHook(warmup_ratio=warmup_ratio)


@pytest.mark.parametrize('kwargs', [dict(), dict(warmup_iters=3, warmup_ratio=0.5)])
def test_warmup_takes_exactly_one_length(kwargs):
    with pytest.raises(ValueError, match='exactly one of warmup_iters and warmup_ratio'):
        DEQWarmupHook(**kwargs)
