"""Every hook finds the MDEQ backbone in one way, and fails early and clearly without one."""
import glob

import pytest
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner

from mdeq_mm.engine.hooks import get_mdeq_backbone, unwrap_model
from mdeq_mm.engine.hooks.mdeq_hook import forward_mode
from mdeq_mm.models import MDEQ
from mdeq_mm.models.head_channels import HeadChannelsError

HOOKS = [
    dict(type='DEQWarmupHook', warmup_iters=2),
    dict(type='DEQSolverStatsHook'),
    dict(type='JacobianRegHook', weight=0.5, prob=0.5),
    dict(type='DEQEvalBudgetHook', max_iter=2),
]


class PlainModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return self.linear(inputs)


class Nested(nn.Module):

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Identity(), MDEQ(arch=dict(num_channels=(8, 16))))


def test_finds_the_backbone_anywhere_and_through_wrappers():
    model = Nested()
    wrapped = nn.DataParallel(model)
    assert unwrap_model(wrapped) is model
    assert get_mdeq_backbone(wrapped, 'SomeHook') is model.body[1]


@pytest.mark.parametrize('args, kwargs, mode', [
    (('inputs', 'samples', 'loss'), {}, 'loss'),
    (('inputs', ), dict(data_samples='samples', mode='predict'), 'predict'),
    (('inputs', ), {}, 'tensor'),
])
def test_forward_mode_is_read_by_name_by_position_or_defaults_like_base_model(args, kwargs, mode):
    assert forward_mode(args, kwargs) == mode


def test_plain_model_is_rejected_with_a_clear_error():
    with pytest.raises(ValueError,
                       match='SomeHook needs a model with an MDEQ backbone; found none in '
                       'PlainModel'):
        get_mdeq_backbone(PlainModel(), 'SomeHook')


@pytest.mark.parametrize('hook', HOOKS, ids=[h['type'] for h in HOOKS])
def test_hooks_fail_at_before_run_without_mdeq(data_root, tmp_path, hook, runner_cfg,
                                               resnet_backbone_cfg):
    cfg = runner_cfg(
        data_root, str(tmp_path), [hook], backbone=resnet_backbone_cfg(), in_channels=(8, 16))
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError, match=f"{hook['type']} needs a model with an MDEQ backbone; "
                       'found none in EncoderDecoder'):
        runner.train()
    assert not glob.glob(str(tmp_path / '*' / 'vis_data' / 'scalars.json'))  # nothing ran


def test_hooks_stop_a_run_whose_head_takes_other_channels_at_before_run(data_root, tmp_path,
                                                                        runner_cfg):
    cfg = runner_cfg(data_root, str(tmp_path), [dict(type='DEQSolverStatsHook')])
    cfg.model.decode_head.in_channels = [18, 36]  # HRNet-W18's first branches; MDEQ's are 8, 16
    runner = Runner.from_cfg(cfg)
    with pytest.raises(HeadChannelsError, match=r'takes 54 channels, but the MDEQ backbone '
                       r'gives 24: .* Write model.decode_head.in_channels=\[8, 16\]'):
        runner.train()
    assert not glob.glob(str(tmp_path / '*' / 'vis_data' / 'scalars.json'))  # nothing ran
