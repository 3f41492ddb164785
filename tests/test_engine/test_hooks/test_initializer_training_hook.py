"""InitializerTrainingHook: only the initializer learns, on its own losses, from a loaded model."""
import pytest
import torch
from mmengine.runner import Runner

from mdeq_mm.engine.hooks import InitializerTrainingHook


def test_only_the_initializer_learns_and_its_losses_replace_the_task_losses(
        data_root, tmp_path, runner_cfg, mdeq_backbone_cfg):
    trained = Runner.from_cfg(runner_cfg(data_root, str(tmp_path / 'trained')))
    checkpoint = str(tmp_path / 'trained.pth')
    torch.save(dict(state_dict=trained.model.state_dict()), checkpoint)
    backbone = mdeq_backbone_cfg(initializer=dict(type='MDEQInitializer'))
    runner = Runner.from_cfg(
        runner_cfg(data_root, str(tmp_path / 'fit'), max_iters=3, backbone=backbone,
                   custom_hooks=[dict(type='InitializerTrainingHook')], load_from=checkpoint))
    runner.train()
    loaded = torch.load(checkpoint)['state_dict']
    state = runner.model.state_dict()
    for key, value in loaded.items():  # BatchNorm statistics included
        torch.testing.assert_close(state[key], value, msg=key)
    # the outputs left zero (the cold start): their norms' scale and shift learned
    assert any(not bool((state[k] == 0).all()) for k in state if '.initializer.norms' in k)
    recorder = runner.hooks[-1]
    for record in recorder.train:
        assert {'loss_init_dist', 'loss_init_res'} <= set(record['outputs'])
        assert not any(k.startswith('decode.loss') for k in record['outputs'])
        assert record['hub']['train/init_target_steps'] >= 1
    assert not runner.model.backbone.initializer.fitting


def test_training_a_backbone_without_initializer_is_refused(data_root, tmp_path, runner_cfg):
    runner = Runner.from_cfg(runner_cfg(data_root, str(tmp_path)))
    hook = InitializerTrainingHook()
    hook.before_run(runner)
    hook.before_test(runner)  # testing needs none
    with pytest.raises(ValueError, match='initializer'):
        hook.before_train(runner)
