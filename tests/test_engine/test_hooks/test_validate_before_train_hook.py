import random

import numpy as np
import torch
from mmengine.runner import Runner

from mdeq_mm.engine.hooks.validate_before_train_hook import preserved_rng_state


def _run(runner_cfg, data_root, work_dir, hooks, backbone, **kwargs):
    runner = Runner.from_cfg(runner_cfg(data_root, work_dir, hooks, backbone=backbone, **kwargs))
    runner.train()
    return runner


def test_the_initial_weights_are_validated_at_step_0_and_training_is_unchanged(
        data_root, tmp_path, runner_cfg, recorder_of, read_scalars, mdeq_backbone_cfg):
    # dropout draws from torch's generator at every training forward: a draw taken by the
    # validation before training would change the run
    backbone = mdeq_backbone_cfg(dropout=0.3)
    hook = [dict(type='ValidateBeforeTrainHook')]
    runs = {name: _run(runner_cfg, data_root, str(tmp_path / name), hooks, backbone,
                       max_iters=3, val_interval=3)
            for name, hooks in (('with', hook), ('without', []))}
    val_steps = {name: [r['step'] for r in read_scalars(str(tmp_path / name)) if 'mIoU' in r]
                 for name in runs}
    assert val_steps == {'with': [0, 3], 'without': [3]}
    records = {name: recorder_of(runner) for name, runner in runs.items()}
    assert [r['train_iter'] for r in records['with'].val] == [0, 0, 3, 3]  # 2 images each
    assert [r['outputs'] for r in records['with'].train] == \
        [r['outputs'] for r in records['without'].train]


def test_a_resumed_run_is_not_validated_before_it_continues(
        data_root, tmp_path, runner_cfg, read_scalars, mdeq_backbone_cfg):
    hook = [dict(type='ValidateBeforeTrainHook')]
    first = str(tmp_path / 'first')
    _run(runner_cfg, data_root, first, [], mdeq_backbone_cfg(), max_iters=2,
         checkpoint_interval=2)
    resumed = str(tmp_path / 'resumed')
    _run(runner_cfg, data_root, resumed, hook, mdeq_backbone_cfg(), max_iters=4,
         val_interval=4, load_from=f'{first}/iter_2.pth', resume=True)
    assert [r['step'] for r in read_scalars(resumed) if 'mIoU' in r] == [4]


def test_preserved_rng_state_restores_python_numpy_and_torch():
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    expected = (random.random(), np.random.rand(), float(torch.rand(1)))
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    with preserved_rng_state():
        random.random(), np.random.rand(), torch.rand(3)
    assert (random.random(), np.random.rand(), float(torch.rand(1))) == expected
