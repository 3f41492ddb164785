"""The command-line parts the tools share: the analysis tools' parser, the arguments
tools/train.py and tools/test.py share with mmseg's tools, the test tool's checked
checkpoint loading and the CPU multi-process setup."""
import argparse
import itertools
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import EMAHook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmpretrain.engine.hooks import EMAHook as PretrainEMAHook
from torch import nn

from mdeq_mm.engine.checkpoint import UnreadableCheckpointError
from mdeq_mm.engine.launch import (IncompatibleCheckpointError, adapt_to_cpu_processes,
                                   add_launch_args, add_resume_arg, enable_tta,
                                   enable_visualization, load_checkpoint,
                                   load_checkpoint_before_run, parse_tool_args, set_resume,
                                   tool_parser)


def test_launch_arguments_parse_like_mmsegs_and_export_the_local_rank(monkeypatch):
    parser = argparse.ArgumentParser()
    add_launch_args(parser)
    monkeypatch.delenv('LOCAL_RANK', raising=False)
    args = parse_tool_args(parser, ['--cfg-options', 'a.b=1', 'c=x', '--launcher', 'pytorch',
                                    '--local-rank', '3'])
    assert args.cfg_options == {'a.b': 1, 'c': 'x'} and args.launcher == 'pytorch'
    assert os.environ['LOCAL_RANK'] == '3'


def test_a_local_rank_set_by_the_launcher_is_kept(monkeypatch):
    parser = argparse.ArgumentParser()
    add_launch_args(parser)
    monkeypatch.setenv('LOCAL_RANK', '1')
    assert parse_tool_args(parser, []).local_rank == 0
    assert os.environ['LOCAL_RANK'] == '1'


def test_tool_parser_describes_a_tool_with_its_docstring_and_keeps_the_examples_as_written():
    doc = 'Measure a thing.\n\nExample:\n    python tools/x.py --flag    # keep  spacing\n'
    parser = tool_parser(doc)
    assert parser.description == 'Measure a thing.'
    help_text = parser.format_help()
    assert 'python tools/x.py --flag    # keep  spacing' in help_text
    assert tool_parser('One line only.').epilog is None

@pytest.mark.parametrize('argv, resume, load_from', [
    ([], False, 'pretrained.pth'),
    (['--resume'], True, None),
    (['--resume', 'work_dirs/x/iter_8.pth'], True, 'work_dirs/x/iter_8.pth'),
])
def test_resume_takes_an_optional_checkpoint_like_mmpretrains(argv, resume, load_from):
    parser = argparse.ArgumentParser()
    parser.add_argument('config')
    add_resume_arg(parser)
    args = parser.parse_args(['cfg.py', *argv])
    cfg = Config(dict(load_from='pretrained.pth', resume=True))
    set_resume(cfg, args.resume)
    assert (cfg.resume, cfg.load_from) == (resume, load_from)


def test_show_dir_paints_every_sample_unless_an_interval_is_given():
    cfg = Config(dict(default_scope='mmseg', visualizer=dict(type='SegLocalVisualizer'),
                      default_hooks=dict(visualization=dict(type='SegVisualizationHook'))))
    enable_visualization(cfg, show_dir='show')
    assert cfg.default_hooks.visualization.interval == 1  # mmseg's hook: 50
    assert cfg.visualizer.save_dir == 'show'
    enable_visualization(cfg, show_dir='show', interval=3)
    assert cfg.default_hooks.visualization.interval == 3


def test_tta_refuses_an_enabled_cls_visualization_hook_and_says_why():
    cfg = Config(dict(default_scope='mmpretrain',
                      default_hooks=dict(visualization=dict(type='VisualizationHook'))))
    enable_visualization(cfg, show_dir='show')
    with pytest.raises(ValueError, match=r"--tta cannot be combined with --show / --show-dir .*"
                       r"one batch per augmentation"):
        enable_tta(cfg)


RUN_IDS = itertools.count()


class TwoLayers(BaseModel):

    def __init__(self, hidden=4):
        super().__init__()
        self.first = nn.Linear(2, hidden)
        self.second = nn.Linear(hidden, 1)
        self.norm = nn.BatchNorm1d(1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return self.norm(self.second(self.first(inputs)))


def toy_runner(work_dir):
    return Runner(model=TwoLayers(), work_dir=str(work_dir), default_scope='mmengine',
                  experiment_name=f'load_checkpoint_{next(RUN_IDS)}')


def test_checkpoint_of_another_model_is_summarized_before_anything_is_loaded(tmp_path, capsys):
    runner = toy_runner(tmp_path / 'run')
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    other = tmp_path / 'other.pth'
    torch.save(dict(state_dict={**TwoLayers(hidden=8).state_dict(), 'extra': torch.ones(1)}),
               other)
    with pytest.raises(IncompatibleCheckpointError) as err:
        load_checkpoint(runner, str(other))
    assert (err.value.missing, err.value.unexpected) == ([], ['extra'])
    assert sorted(err.value.mismatched) == ['first.bias', 'first.weight', 'second.weight']
    assert '4 mis-shaped' not in str(err.value) and '3 mis-shaped' in str(err.value)
    printed = capsys.readouterr()
    assert 'size mismatch' not in printed.out + printed.err
    for key, value in runner.model.state_dict().items():
        assert torch.equal(value, before[key]), key  # nothing was loaded


def test_partial_load_warns_once_and_loads_the_keys_that_fit(tmp_path, capsys):
    runner = toy_runner(tmp_path / 'run')
    source = TwoLayers(hidden=8)
    torch.nn.init.constant_(source.norm.weight, 3.0)
    other = tmp_path / 'other.pth'
    torch.save(dict(state_dict={'module.' + k: v for k, v in source.state_dict().items()}),
               other)
    load_checkpoint(runner, str(other), strict=False)
    assert torch.equal(runner.model.norm.weight, source.norm.weight)
    assert torch.equal(runner.model.second.bias, source.second.bias)
    printed = capsys.readouterr()
    assert 'size mismatch' not in printed.out + printed.err
    assert printed.out.count('does not fit the model') == 1


def test_fitting_checkpoint_loads_every_tensor(tmp_path):
    runner = toy_runner(tmp_path / 'run')
    source = TwoLayers()
    path = tmp_path / 'same.pth'
    torch.save(dict(meta=dict(), state_dict=source.state_dict()), path)
    load_checkpoint(runner, str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(runner.model.state_dict()[key], value), key


@pytest.mark.parametrize('ema_hook', [EMAHook, PretrainEMAHook])
def test_ema_checkpoint_loads_as_the_runner_loads_it(tmp_path, ema_hook):
    # A checkpoint as EMAHook saves it: the averaged weights in state_dict, the trained ones
    # in ema_state_dict. Loading it needs the hook's averaged model, built in before_run.
    trained, averaged = TwoLayers(), TwoLayers()
    path = tmp_path / 'ema.pth'
    torch.save(dict(state_dict=averaged.state_dict(),
                    ema_state_dict=dict({'module.' + k: v for k, v in trained.state_dict().items()},
                                        steps=torch.tensor(10))), path)
    loaded = {}
    for how in ('ours', 'runner'):
        runner, hook = toy_runner(tmp_path / how), ema_hook()
        runner.register_hook(hook)
        if how == 'ours':
            load_checkpoint_before_run(runner, str(path))
            runner.call_hook('before_run')  # as Runner.test() / val() / train() start
        else:
            runner.call_hook('before_run')
            runner.load_checkpoint(str(path))
        loaded[how] = (runner.model.state_dict(), hook.ema_model.module.state_dict())
    for ours, reference in zip(loaded['ours'], loaded['runner']):
        for key, value in reference.items():
            assert torch.equal(ours[key], value), key


def test_truncated_checkpoint_stops_the_loading_with_one_line(tmp_path):
    runner = toy_runner(tmp_path / 'run')
    path = tmp_path / 'cut.pth'
    torch.save(dict(state_dict=TwoLayers().state_dict()), path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(UnreadableCheckpointError, match=r'cut\.pth \(300 bytes\)'):
        load_checkpoint(runner, str(path))



@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)


def stock_like_config(launcher='pytorch', **extra):
    sync_bn = dict(type='SyncBN', requires_grad=True)
    return Config(dict(launcher=launcher, **extra, model=dict(
        backbone=dict(norm_cfg=sync_bn),
        decode_head=[dict(norm_cfg=sync_bn), dict(norm_cfg=dict(type='GN', num_groups=2))])))


def test_cpu_processes_get_the_cpu_wrapper_and_bn_instead_of_sync_bn(no_cuda):
    cfg = stock_like_config()
    notes = adapt_to_cpu_processes(cfg)
    assert cfg.model_wrapper_cfg == dict(type='CPUDistributedDataParallel')
    assert cfg.model.backbone.norm_cfg == dict(type='BN', requires_grad=True)
    assert [head.norm_cfg.type for head in cfg.model.decode_head] == ['BN', 'GN']
    assert len(notes) == 2 and '2 SyncBN norm config(s)' in notes[1]


def test_the_default_wrappers_options_are_kept_and_a_custom_wrapper_is_left_alone(no_cuda):
    cfg = stock_like_config(model_wrapper_cfg=dict(type='MMDistributedDataParallel',
                                                   find_unused_parameters=True))
    adapt_to_cpu_processes(cfg)
    assert cfg.model_wrapper_cfg == dict(type='CPUDistributedDataParallel',
                                         find_unused_parameters=True)
    cfg = stock_like_config(model_wrapper_cfg=dict(type='MyWrapper'))
    adapt_to_cpu_processes(cfg)
    assert cfg.model_wrapper_cfg == dict(type='MyWrapper')


def test_a_single_process_run_is_not_changed(no_cuda):
    cfg = stock_like_config(launcher='none')
    assert adapt_to_cpu_processes(cfg) == []
    assert cfg.model.backbone.norm_cfg.type == 'SyncBN' and 'model_wrapper_cfg' not in cfg
