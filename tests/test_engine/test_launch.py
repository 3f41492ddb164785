"""The command-line parts the tools share: the analysis tools' parser, and the arguments
tools/train.py and tools/test.py share with mmseg's tools."""
import argparse
import os

from mdeq_mm.engine.launch import add_launch_args, parse_tool_args, tool_parser


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
