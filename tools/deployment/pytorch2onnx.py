"""Export an MDEQ segmentor or classifier to ONNX at a fixed solver budget and check it.

The exported graph runs exactly --budget evaluations of f (pick it from the anytime curve of
tools/analysis_tools/analyze_solver.py), takes normalized (N, 3, H, W) images (mean/std and
channel order of the config's data preprocessor applied outside) and returns the model's
mode='tensor' output: a segmentor's decode-head logits (upsample and argmax outside), a
classifier's class scores. The file is then run in ONNX Runtime (CPU) on a generated street
scene (or --input-img) and compared with PyTorch's usual evaluation at the same budget; the
tool fails when the largest difference exceeds --rtol times the largest PyTorch logit.
Needs the optional packages onnx and onnxruntime (requirements/optional.txt).

Example:
    python tools/deployment/pytorch2onnx.py \\
        configs/mdeq/fcn_mdeq-tiny_1xb4-300it_demo-cityscapes-64x128.py \\
        --checkpoint work_dirs/demo/iter_300.pth --budget 8 --shape 64 128 \\
        --output-file work_dirs/demo/mdeq_tiny_b8.onnx
"""
import argparse
import os
import os.path as osp

import numpy as np
from mmengine.config import DictAction
from mmengine.logging import MMLogger

from mdeq_mm.analysis import build_mdeq_model, generated_scenes, to_inputs
from mdeq_mm.deploy import compare_with_pytorch, export_onnx, measure_latency
from mdeq_mm.deploy.onnx_export import DEFAULT_OPSET
from mdeq_mm.engine.launch import tool_parser

DYNAMIC_AXES = ('batch', 'height', 'width')
DEFAULT_RTOL = 1e-4


def parse_args(argv=None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    parser.add_argument('config', help='an MDEQ segmentation or classification config')
    parser.add_argument('--checkpoint', help='weights to export (default: random init, for '
                        'trying the export only)')
    parser.add_argument('--output-file', default='work_dirs/mdeq.onnx')
    parser.add_argument('--budget', type=int, help='evaluations of f in the exported solve '
                        "(default: the backbone's eval_max_iter, else its forward max_iter)")
    parser.add_argument('--shape', type=int, nargs=2, required=True, metavar=('H', 'W'),
                        help='input height and width, divisible by the backbone stride')
    parser.add_argument('--batch', type=int, default=1, help='batch size of the traced input')
    parser.add_argument('--dynamic', nargs='+', choices=DYNAMIC_AXES, default=[],
                        help='input dimensions left free in the file (batch only: the '
                        "solver state's per-image size is part of the graph)")
    parser.add_argument('--opset-version', type=int, default=DEFAULT_OPSET)
    parser.add_argument('--dynamo', action='store_true',
                        help='use the torch.export based exporter (default: TorchScript)')
    parser.add_argument('--input-img', nargs='+', help='images to check the file on '
                        '(default: a generated street scene)')
    parser.add_argument('--rtol', type=float, default=DEFAULT_RTOL,
                        help='largest accepted difference, relative to the largest logit')
    parser.add_argument('--benchmark', type=int, metavar='ROUNDS',
                        help='then time ONNX Runtime against PyTorch eager (1 thread each) in '
                        'ROUNDS interleaved rounds on the check images')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, xxx=yyy format')
    args = parser.parse_args(argv)
    fixed = [axis for axis in args.dynamic if axis != 'batch']
    if fixed:
        parser.error(f'--dynamic {" ".join(fixed)}: not supported; the height and width are '
                     'fixed in the exported solve (its state has one size per image); export '
                     'one file per input size')
    return args


def check_images(args: argparse.Namespace, batch: int) -> np.ndarray:
    """RGB uint8 images (batch, H, W, 3) at --shape: --input-img or generated scenes."""
    h, w = args.shape
    if not args.input_img:
        return generated_scenes(batch, h, w)[0]
    import mmcv
    images = [mmcv.imresize(mmcv.imread(p, channel_order='rgb'), (w, h)) for p in args.input_img]
    return np.stack([images[i % len(images)] for i in range(batch)])


def main(argv=None) -> dict:
    args = parse_args(argv)
    logger = MMLogger.get_instance('mdeq_pytorch2onnx')
    _, model, mdeq = build_mdeq_model(args.config, args.cfg_options, args.checkpoint)
    budget = args.budget or mdeq.eval_max_iter or mdeq.deq.forward_cfg.max_iter
    if not args.checkpoint:
        logger.warning('no --checkpoint: exporting randomly initialized weights')
    shape = (args.batch, mdeq.in_channels, *args.shape)
    os.makedirs(osp.dirname(osp.abspath(args.output_file)), exist_ok=True)
    export_onnx(model, args.output_file, shape, budget, dynamic_batch='batch' in args.dynamic,
                opset_version=args.opset_version, dynamo=args.dynamo)
    logger.info(f'wrote {args.output_file}: input {shape} ({", ".join(args.dynamic) or "static"}'
                f'), solver {mdeq.deq.forward_cfg.type} with {budget} evaluations of f')
    batches = [args.batch] + ([args.batch + 1] if 'batch' in args.dynamic else [])
    result = dict(output_file=args.output_file, budget=budget, shape=list(shape), checks=[])
    for batch in batches:
        inputs = to_inputs(model, check_images(args, batch))
        diff = compare_with_pytorch(args.output_file, model, inputs, budget)
        result['checks'].append(dict(batch=batch, **diff))
        logger.info(f'ONNX Runtime vs PyTorch, batch {batch}: max abs difference '
                    f'{diff["max_abs"]:.3g}, relative to the largest logit ({diff["scale"]:.3g}) '
                    f'{diff["max_rel"]:.3g}')
        if diff['max_rel'] > args.rtol:
            raise SystemExit(f'ONNX Runtime output differs from PyTorch by {diff["max_rel"]:.3g} '
                             f'of the largest logit, more than --rtol {args.rtol:g}')
    if args.benchmark:
        inputs = to_inputs(model, check_images(args, args.batch))
        latency = measure_latency(args.output_file, model, inputs, budget, args.benchmark)
        result['latency'] = latency
        seconds, ratio = latency['seconds'], latency['ratio']
        fixed, usual = ratio['pytorch_fixed'], ratio['pytorch']
        logger.info(
            f'CPU latency, 1 thread, median of {args.benchmark} rounds: ONNX Runtime '
            f'{seconds["onnxruntime"] * 1e3:.1f} ms, PyTorch with the same {budget} evaluations '
            f'{seconds["pytorch_fixed"] * 1e3:.1f} ms (ratio {fixed["median"]:.2f}, '
            f'{fixed["low"]:.2f}-{fixed["high"]:.2f}), PyTorch\'s usual solve '
            f'{seconds["pytorch"] * 1e3:.1f} ms (ratio {usual["median"]:.2f})')
    return result


if __name__ == '__main__':
    main()
