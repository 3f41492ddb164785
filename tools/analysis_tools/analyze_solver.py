"""Solver diagnostics of an MDEQ config: residual curves and anytime inference.

1. Residual against iteration of the forward solve (each of --solvers, the whole budget, no
   early stop) and of the implicit backward solve at the equilibrium, for the config's model
   (randomly initialized, or --checkpoint) on --images or generated street scenes:
   residual_curves.png and residuals.json.
2. Anytime inference, with --checkpoint: the task metric (mIoU, top-1) against the evaluation
   step budget (the backbone's eval_max_iter), each budget one pass of the mmengine Runner's
   test loop over the config's test set: anytime.png and anytime.json. Point the config at
   data with --cfg-options, e.g. test_dataloader.dataset.data_root=data/mdeq_demo_cityscapes.
   A model with a learned initializer is measured twice: from its learned start and from
   zeros (the cold start), both curves in one plot. A large budget (e.g. 30) gives the mean
   f-evaluations to reach the tolerance of the config's forward solver.

Example:
    python tools/analysis_tools/analyze_solver.py \\
        configs/mdeq/fcn_mdeq-tiny_1xb4-300it_demo-cityscapes-64x128.py \\
        --checkpoint work_dirs/demo/iter_300.pth --budgets 1 2 4 8 12 \\
        --out-dir work_dirs/demo/solver_analysis
"""
import argparse
import json
import os
import os.path as osp

import numpy as np
from mmengine.config import DictAction
from mmengine.logging import MMLogger

from mdeq_mm.analysis import build_mdeq_model, generated_scenes, make_batch
from mdeq_mm.analysis.models import task_of
from mdeq_mm.analysis.report import plot_anytime, plot_residual_curves
from mdeq_mm.analysis.solver_curves import anytime_inference, backward_curve, forward_curves
from mdeq_mm.deq import SOLVERS
from mdeq_mm.engine.launch import tool_parser

DEFAULT_SIZE = {'seg': (128, 256), 'cls': (224, 224)}


def parse_args(argv=None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    parser.add_argument('config', help='an MDEQ segmentation or classification config')
    parser.add_argument('--checkpoint', help='weights to load (also enables anytime inference)')
    parser.add_argument('--images', nargs='+', help='image files (default: generated scenes)')
    parser.add_argument('--num-images', type=int, default=2,
                        help='generated scenes when --images is not given')
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size (default 128 256 for segmentation, 224 224 for '
                        'classification; rounded down to the backbone stride)')
    parser.add_argument('--max-iter', type=int, default=40,
                        help='solver budget of the residual curves')
    parser.add_argument('--solvers', nargs='+', default=['broyden', 'anderson', 'fixed_point'],
                        choices=sorted(SOLVERS), help='forward solvers to compare')
    parser.add_argument('--budgets', type=int, nargs='+', default=[1, 2, 4, 8, 16, 26],
                        help='evaluation step budgets of the anytime-inference curve')
    parser.add_argument('--metric', help='metric of the anytime curve (default mIoU or '
                        'accuracy/top1)')
    parser.add_argument('--out-dir', default='work_dirs/analyze_solver')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, xxx=yyy format, e.g. '
        'test_dataloader.dataset.data_root=data/mdeq_demo_cityscapes')
    return parser.parse_args(argv)


def load_images(args: argparse.Namespace, task: str, stride: int):
    """RGB images (N, H, W, 3) and, for generated scenes, their label maps."""
    h, w = args.size or DEFAULT_SIZE[task]
    h, w = max(stride, h // stride * stride), max(stride, w // stride * stride)
    if not args.images:
        return generated_scenes(args.num_images, h, w)
    import mmcv
    images = [mmcv.imresize(mmcv.imread(p, channel_order='rgb'), (w, h)) for p in args.images]
    return np.stack(images), None


def main(argv=None) -> dict:
    args = parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    logger = MMLogger.get_instance('mdeq_analyze_solver',
                                   log_file=osp.join(args.out_dir, 'analyze_solver.log'))
    cfg, model, mdeq = build_mdeq_model(args.config, args.cfg_options, args.checkpoint)
    x, samples = make_batch(model, *load_images(args, task_of(model), mdeq.total_stride))
    name = osp.splitext(osp.basename(args.config))[0]
    logger.info(f'residual curves of {name} on {len(x)} image(s) of '
                f'{x.shape[-2]}x{x.shape[-1]}, {args.max_iter} steps ...')
    forward = forward_curves(model, x, args.solvers, args.max_iter)
    backward = backward_curve(model, x, samples, args.max_iter)
    title = f'{name} ({"checkpoint" if args.checkpoint else "random init"})'
    plot_residual_curves(osp.join(args.out_dir, 'residual_curves.png'), forward, backward,
                         title)
    result = dict(config=args.config, checkpoint=args.checkpoint, size=list(x.shape[-2:]),
                  images=args.images or f'{len(x)} generated scenes', max_iter=args.max_iter,
                  forward=forward, backward={'solver': backward[0], **backward[1]})
    for solver, curve in [*forward.items(), (f'backward {backward[0]}', backward[1])]:
        logger.info(f'{solver}: final mean relative residual {np.mean(curve["rel"][-1]):.3f}')
    with open(osp.join(args.out_dir, 'residuals.json'), 'w', encoding='utf-8') as f:
        json.dump(result, f)
    if args.checkpoint:
        anytime = anytime_inference(cfg, args.checkpoint, args.budgets, args.metric,
                                    osp.join(args.out_dir, 'work_dir'), logger)
        plot_anytime(osp.join(args.out_dir, 'anytime.png'), anytime['rows'], name,
                     anytime.get('cold_rows'))
        with open(osp.join(args.out_dir, 'anytime.json'), 'w', encoding='utf-8') as f:
            json.dump(anytime, f, indent=1)
        result['anytime'] = anytime
    else:
        logger.info('no --checkpoint: skipping the anytime-inference curve')
    return result


if __name__ == '__main__':
    main()
