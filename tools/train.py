"""Train a segmentor or classifier from an mmseg / mmpretrain config.

Same arguments as mmseg's ``tools/train.py``; ``--resume`` also takes a checkpoint path, as
mmpretrain's does. Additionally imports ``mdeq_mm`` (for configs that do not list it in
``custom_imports``) and, on CPU-only machines under ``--launcher pytorch``, starts a gloo process
group, wraps the model in ``CPUDistributedDataParallel`` unless the config names another wrapper
and turns SyncBN into BN (both logged), so that ``tools/dist_train.sh CONFIG 2`` runs any config
without GPUs.
"""
import argparse
import logging

from mmengine.logging import print_log

import mdeq_mm  # noqa: F401  (registers MDEQ components)
from mdeq_mm.engine.launch import (add_launch_args, add_resume_arg, build_runner,
                                   load_tool_config, parse_tool_args, set_resume)
from mdeq_mm.models.head_channels import HeadChannelsError


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a segmentor or classifier')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    add_resume_arg(parser)
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training (needs a GPU)')
    add_launch_args(parser)
    return parse_tool_args(parser)


def main() -> None:
    args = parse_args()
    cfg = load_tool_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    if args.amp:
        optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if optim_wrapper == 'AmpOptimWrapper':
            print_log('AMP training is already enabled in your config.',
                      logger='current', level=logging.WARNING)
        else:
            assert optim_wrapper in ('OptimWrapper', 'SkipNonFiniteOptimWrapper'), (
                '`--amp` is only supported when the optimizer wrapper type is '
                f'`OptimWrapper` or `SkipNonFiniteOptimWrapper` but got {optim_wrapper}.')
            if optim_wrapper == 'SkipNonFiniteOptimWrapper':
                print_log('--amp: AmpOptimWrapper replaces SkipNonFiniteOptimWrapper; its loss '
                          'scaler skips steps with NaN/Inf gradients, but BN running '
                          'statistics are not restored and skipped steps are not counted.',
                          logger='current', level=logging.WARNING)
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
    set_resume(cfg, args.resume)
    try:
        runner = build_runner(cfg)
    except HeadChannelsError as err:
        raise SystemExit(str(err)) from err
    runner.train()


if __name__ == '__main__':
    main()
