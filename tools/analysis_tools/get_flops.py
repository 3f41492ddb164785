"""Get the FLOPs and parameters of a segmentor or classifier (mmseg's get_flops.py interface).

For an MDEQ backbone the FLOPs depend on the solver: the stem, injection and head run once per
image, f once per solver step. The tool prints both parts and the total at the config's
evaluation budget (eval_max_iter, else forward_solver max_iter); with --checkpoint and images
(--images, or the config's test set with --num-images) it also measures the mean number of
f-evaluations the trained model needs to reach the solver's tolerance, and the total at it.
Any other model (e.g. HRNet) gets its plain FLOPs and parameters.

Examples:
    python tools/analysis_tools/get_flops.py \\
        configs/mdeq/fcn_mdeq-small_4xb3-120k_cityscapes-512x1024.py --shape 512 1024
    python tools/analysis_tools/get_flops.py \\
        configs/hrnet/fcn_hr18_4xb3-120k_cityscapes-512x1024.py --shape 512 1024
    python tools/analysis_tools/get_flops.py \\
        configs/mdeq/fcn_mdeq-small_1xb2-150it_demo-cityscapes-64x128.py --shape 512 1024 \\
        --checkpoint work_dirs/trained_state/iter_150.pth \\
        --images data/mdeq_demo_cityscapes/leftImg8bit/val/
    python tools/analysis_tools/get_flops.py CONFIG --checkpoint CKPT --num-images 20 \\
        --cfg-options test_dataloader.dataset.data_root=data/cityscapes
"""
import argparse

from mmengine.config import DictAction

from mdeq_mm.analysis import build_model, find_mdeq, load_config
from mdeq_mm.analysis.flops import (dataloader_inputs, file_inputs, format_complexity,
                                    measure_nfe, model_complexity, padded_shape)
from mdeq_mm.analysis.models import task_of
from mdeq_mm.engine.launch import tool_parser

DEFAULT_SHAPE = {'seg': [512, 1024], 'cls': [224, 224]}
SPLIT_LINE = '=' * 30


def parse_args(argv=None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    parser.add_argument('config', help='config file path (or an mmseg:: / mmpretrain:: name)')
    parser.add_argument('--shape', type=int, nargs='+', metavar='SIZE',
                        help='input size H [W] (default 512 1024 for segmentation, 224 for '
                        'classification)')
    parser.add_argument('--checkpoint', help='trained weights, to measure the f-evaluations '
                        'of an MDEQ on --images or --num-images test images')
    parser.add_argument('--images', nargs='+', metavar='PATH',
                        help='image files or directories to measure the f-evaluations on '
                        '(resized to --shape)')
    parser.add_argument('--num-images', type=int,
                        help='measure on the first N images of the config\'s test dataloader '
                        '(resized to --shape)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override some settings in the used config, the key-value pair in xxx=yyy '
        'format will be merged into config file, e.g. '
        'test_dataloader.dataset.data_root=data/cityscapes')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    measure = bool(args.images) or args.num_images is not None
    if measure and not args.checkpoint:
        raise ValueError('--images / --num-images measure the f-evaluations of trained '
                         'weights: give --checkpoint (a randomly initialized MDEQ spends its '
                         'whole budget)')
    model = build_model(cfg, checkpoint=args.checkpoint)
    mdeq = find_mdeq(model)
    if measure and mdeq is None:
        raise ValueError(f'--images / --num-images count the f-evaluations of an MDEQ '
                         f'backbone; the model of {args.config} has a '
                         f'{type(model.backbone).__name__}')
    requested = args.shape or DEFAULT_SHAPE[task_of(model)]
    shape = padded_shape(model, requested)
    if shape != tuple(requested * 2)[:2]:
        print(f'{SPLIT_LINE}\nUse size divisor set input shape from {tuple(requested)} '
              f'to {shape}')
    complexity = model_complexity(model, shape)
    measured = None
    if measure:
        inputs = (file_inputs(model, args.images, shape) if args.images else
                  dataloader_inputs(model, cfg.test_dataloader, args.num_images, shape))
        measured = measure_nfe(mdeq, inputs)
    tol = mdeq.deq.forward_cfg.tol if mdeq is not None else None
    print(f'{SPLIT_LINE}\n{format_complexity(complexity, measured, tol)}\n{SPLIT_LINE}')
    print('!!!Please be cautious if you use the results in papers. You may need to check if '
          'all ops are supported and verify that the flops computation is correct.')
    return dict(input_shape=list(shape), params=complexity.params,
                flops=complexity.total(), flops_once=complexity.flops_once,
                flops_f=complexity.flops_f, budget=complexity.budget,
                measured_steps=measured.steps if measured else None,
                measured_evaluations=measured.evaluations if measured else None,
                flops_measured=complexity.total(measured.mean_steps) if measured else None)


if __name__ == '__main__':
    main()
