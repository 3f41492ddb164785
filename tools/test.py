"""Test (evaluate) a segmentor or classifier checkpoint from an mmseg / mmpretrain config.

Same arguments as mmseg's ``tools/test.py`` (``--show``, ``--show-dir``, ``--wait-time``, ``--tta``
through the config's visualization hook and ``tta_model`` / ``tta_pipeline``, following mmseg or
mmpretrain by the config's ``default_scope``); works with ``--launcher pytorch`` on CPU-only
machines like ``tools/train.py`` (CPU model wrapper, SyncBN as BN). Unlike mmengine's
``load_from``, a checkpoint whose keys or shapes do not fit the model stops the test unless
``--allow-partial-load`` is given.
"""
import argparse
import os.path as osp

import mdeq_mm  # noqa: F401  (registers MDEQ components)
from mdeq_mm.engine.checkpoint import UnreadableCheckpointError
from mdeq_mm.engine.launch import (IncompatibleCheckpointError, add_launch_args, build_runner,
                                   enable_tta, enable_visualization, load_checkpoint_before_run,
                                   load_tool_config, parse_tool_args, warn_if_nothing_painted)
from mdeq_mm.models.head_channels import HeadChannelsError


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
        '--show', action='store_true', help='show prediction results in a window')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved (mmseg configs: under '
        'SHOW_DIR/vis_data/vis_image)')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--interval',
        type=int,
        help='paint every INTERVAL-th sample (mmseg configs: batch); default: every one')
    parser.add_argument(
        '--tta', action='store_true', help='test time augmentation (the config\'s tta_model '
        'and tta_pipeline; mmpretrain configs default to flip TTA and cannot be painted with '
        'it)')
    parser.add_argument(
        '--allow-partial-load',
        action='store_true',
        help='evaluate even if the checkpoint misses keys, has unexpected ones or other '
        'shapes (those parts keep their initialization)')
    add_launch_args(parser)
    return parse_tool_args(parser)


def main() -> None:
    args = parse_args()
    cfg = load_tool_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    try:
        if args.show or args.show_dir:
            enable_visualization(cfg, args.show, args.show_dir, args.wait_time, args.interval)
        if args.tta:
            enable_tta(cfg)
    except ValueError as err:
        raise SystemExit(str(err)) from err
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--out must be a .pkl file, got {args.out}')
        evaluators = cfg.test_evaluator
        if isinstance(evaluators, dict):
            evaluators = [evaluators]
        cfg.test_evaluator = [*evaluators, dict(type='DumpResults', out_file_path=args.out)]
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint not found: {args.checkpoint}')
    # The runner loads the weights where it loads load_from, after checking that they fit; it
    # must not load them again (cfg.load_from), which would print mmengine's line per unfit key
    cfg.load_from = None
    try:
        runner = build_runner(cfg)
    except HeadChannelsError as err:
        raise SystemExit(str(err)) from err
    load_checkpoint_before_run(runner, args.checkpoint, strict=not args.allow_partial_load)
    if args.show or args.show_dir:
        warn_if_nothing_painted(runner, args.interval)
    try:
        runner.test()
    except IncompatibleCheckpointError as err:
        raise SystemExit(f'{err}\nPass --allow-partial-load to evaluate it anyway.') from err
    except UnreadableCheckpointError as err:
        raise SystemExit(str(err)) from err


if __name__ == '__main__':
    main()
