"""The command-line parts the tools share: the analysis tools' parser, the arguments
tools/train.py and tools/test.py share with mmseg's tools, and the CPU multi-process setup."""
import argparse
import os

import pytest
import torch
from mmengine.config import Config

from mdeq_mm.engine.launch import (adapt_to_cpu_processes, add_launch_args, parse_tool_args,
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
