"""Test (evaluate) a segmentor or classifier checkpoint from an mmseg / mmpretrain config.

Same core arguments as mmseg's ``tools/test.py``; works with ``--launcher pytorch`` on CPU-only
machines like ``tools/train.py``.
"""
import argparse
import os

from mmengine.config import DictAction

import mdeq_mm  # noqa: F401  (registers MDEQ components)
from mdeq_mm.engine.launch import build_runner, load_tool_config


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out', help='the file to dump the predictions to (a .pkl file)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main() -> None:
    args = parse_args()
    cfg = load_tool_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    cfg.load_from = args.checkpoint
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--out must be a .pkl file, got {args.out}')
        evaluators = cfg.test_evaluator
        if isinstance(evaluators, dict):
            evaluators = [evaluators]
        cfg.test_evaluator = [*evaluators, dict(type='DumpResults', out_file_path=args.out)]
    build_runner(cfg).test()


if __name__ == '__main__':
    main()
