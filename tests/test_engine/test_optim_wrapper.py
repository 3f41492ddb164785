"""SkipNonFiniteOptimWrapper: finite updates as OptimWrapper's, non-finite ones skipped."""
import copy

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.optim import OptimWrapper
from mmengine.runner import Runner
from torch import nn

from mdeq_mm.engine import SkipNonFiniteOptimWrapper


class TinyNet(nn.Module):
    """conv-BN whose BN running statistics a NaN image would poison in training mode."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x)).square().mean()


def images(nan: bool = False, seed: int = 0):
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    if nan:
        x[1, 0, 0, 0] = float('nan')
    return x


def wrapper_for(model, cls=SkipNonFiniteOptimWrapper, **kwargs):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return cls(optimizer=optimizer, **kwargs)


def train_step(model, wrapper, x):
    """What an OpenMMLab model's ``train_step`` does with its optim wrapper."""
    with wrapper.optim_context(model):
        loss = model(x)
    wrapper.update_params(loss)


def state_of(model, wrapper):
    return copy.deepcopy(dict(model=model.state_dict(), optim=wrapper.optimizer.state_dict()))


def assert_same_state(got, expected):
    torch.testing.assert_close(got['model'], expected['model'], rtol=0, atol=0)
    torch.testing.assert_close(got['optim'], expected['optim'], rtol=0, atol=0)


@pytest.fixture
def log_file(tmp_path):
    path = str(tmp_path / 'skip.log')
    MMLogger.get_instance(f'skip_test_{tmp_path.name}', log_file=path)
    return path


def test_finite_updates_equal_the_stock_optim_wrappers():
    ours, stock = TinyNet(), TinyNet()
    ours_wrapper = wrapper_for(ours, clip_grad=dict(max_norm=0.1))
    stock_wrapper = wrapper_for(stock, cls=OptimWrapper, clip_grad=dict(max_norm=0.1))
    for seed in range(3):
        train_step(ours, ours_wrapper, images(seed=seed))
        train_step(stock, stock_wrapper, images(seed=seed))
    assert_same_state(state_of(ours, ours_wrapper), state_of(stock, stock_wrapper))
    assert ours_wrapper.skipped_steps == 0


def test_a_nan_batch_changes_no_weight_state_or_bn_statistic_and_training_continues(log_file):
    model = TinyNet().train()
    wrapper = wrapper_for(model, clip_grad=dict(max_norm=1.0))
    train_step(model, wrapper, images(seed=1))
    before = state_of(model, wrapper)

    train_step(model, wrapper, images(nan=True))
    assert_same_state(state_of(model, wrapper), before)
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    assert wrapper.skipped_steps == 1
    assert wrapper.message_hub.get_scalar('train/skipped_steps').current() == 1
    with open(log_file) as file:
        assert 'Skipped the optimizer step' in file.read()

    train_step(model, wrapper, images(seed=2))
    assert not torch.equal(model.conv.weight, before['model']['conv.weight'])
    assert all(torch.isfinite(t).all() for t in model.state_dict().values())
    assert wrapper.skipped_steps == 1


def test_with_accumulation_the_whole_window_is_skipped_and_its_statistics_restored():
    model = TinyNet().train()
    wrapper = wrapper_for(model, accumulative_counts=2)
    before = state_of(model, wrapper)
    train_step(model, wrapper, images(nan=True))
    train_step(model, wrapper, images(seed=1))
    assert_same_state(state_of(model, wrapper), before)
    assert wrapper.skipped_steps == 1


def test_the_count_survives_a_state_dict_round_trip_and_the_stock_wrapper_loads_it():
    model = TinyNet().train()
    wrapper = wrapper_for(model)
    train_step(model, wrapper, images(nan=True))
    resumed = wrapper_for(TinyNet())
    resumed.load_state_dict(wrapper.state_dict())
    assert resumed.skipped_steps == 1
    wrapper_for(TinyNet(), cls=OptimWrapper).load_state_dict(wrapper.state_dict())


def test_a_nan_image_in_a_stock_segmentor_is_skipped_and_training_continues(
        tmp_path_factory, data_root, runner_cfg, read_scalars, read_log, resnet_backbone_cfg):
    work_dir = str(tmp_path_factory.mktemp('skip_run'))
    cfg = runner_cfg(data_root, work_dir, max_iters=4, backbone=resnet_backbone_cfg())
    cfg.custom_hooks = [dict(type='NaNImageHook', train_iters=[1])]
    cfg.optim_wrapper.type = 'SkipNonFiniteOptimWrapper'
    runner = Runner.from_cfg(cfg)
    runner.train()
    lines = [line for line in read_scalars(work_dir) if 'lr' in line]
    assert [line['skipped_steps'] for line in lines] == [0, 1, 1, 1]
    assert all(torch.isfinite(t).all() for t in runner.model.state_dict().values())
    assert 'Skipped the optimizer step at iteration 2' in read_log(work_dir)
