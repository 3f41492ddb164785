"""The arguments tools/train.py and tools/test.py share with mmseg's tools."""
import argparse
import os

from mdeq_mm.engine.launch import add_launch_args, parse_tool_args


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
