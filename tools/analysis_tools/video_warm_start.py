"""Warm start on video: f-evaluations per frame and mIoU, cold start vs the previous frame's
equilibrium, on generated street-scene sequences (camera moving forward and sideways, moving
cars) played one after the other as one video.

Both runs solve every frame to the same tolerance (each of --tol, within --max-iter
f-evaluations); the warm run restarts cold at a scene cut between sequences when it detects
one. A model with a learned initializer (MDEQ initializer=...) is also run from its learned
start on every frame, and from it on the first frame and after the cuts of the warm start. Writes video_warm_start.json (per tolerance: per frame f-evaluations, residual traces,
mIoU) and a plot of the residual against f-evaluations at the first tolerance (--plot,
default beside the JSON).

Example:
    python tools/analysis_tools/video_warm_start.py \\
        configs/mdeq/fcn_mdeq-tiny_1xb4-300it_demo-cityscapes-64x128.py \\
        work_dirs/demo/iter_300.pth --out-dir work_dirs/video_warm_start \\
        --plot docs/images/video_warm_start.png
"""
import argparse
import json
import os
import os.path as osp

import numpy as np
from mmengine.config import DictAction
from mmengine.logging import MMLogger

from mdeq_mm.analysis.video import measure_warm_start, plot_warm_start
from mdeq_mm.datasets import render_street_sequence
from mdeq_mm.engine.launch import tool_parser


def parse_args(argv=None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    parser.add_argument('config', help='an MDEQ segmentation config')
    parser.add_argument('checkpoint', help='its trained weights')
    parser.add_argument('--num-sequences', type=int, default=4)
    parser.add_argument('--num-frames', type=int, default=30, help='frames per sequence')
    parser.add_argument('--size', type=int, nargs=2, default=(128, 256), metavar=('H', 'W'),
                        help='frame size (the config\'s test pipeline resizes it)')
    parser.add_argument('--seed', type=int, default=1,
                        help='seed of the sequences (the demo data set uses 0)')
    parser.add_argument('--forward', type=float, nargs=2, default=(0.01, 0.03),
                        metavar=('MIN', 'MAX'), help='range of the zoom per frame of the camera '
                        'driving forward')
    parser.add_argument('--drift', type=float, nargs=2, default=(0.002, 0.006),
                        metavar=('MIN', 'MAX'), help='range of the sideways drift per frame '
                        '(fraction of the street canvas width)')
    parser.add_argument('--tol', type=float, nargs='+', default=[1e-3, 1e-2],
                        help='tolerances both runs solve each frame to, one measurement each')
    parser.add_argument('--max-iter', type=int, default=50,
                        help='budget of f-evaluations per frame')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--out-dir', default='work_dirs/video_warm_start')
    parser.add_argument('--plot', help='where the PNG goes (default: in --out-dir)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, xxx=yyy format')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    import mdeq_mm  # noqa: F401  (registers the MDEQ components)
    from mmseg.apis import init_model

    os.makedirs(args.out_dir, exist_ok=True)
    logger = MMLogger.get_instance('mdeq_video_warm_start',
                                   log_file=osp.join(args.out_dir, 'video_warm_start.log'))
    model = init_model(args.config, args.checkpoint, device=args.device,
                       cfg_options=args.cfg_options)
    rng = np.random.default_rng(args.seed)
    sequences = [render_street_sequence(rng, args.num_frames, *args.size,
                                        forward=tuple(args.forward), drift=tuple(args.drift))
                 for _ in range(args.num_sequences)]
    runs = []
    for tol in args.tol:
        runs.append(measure_warm_start(model, sequences, tol, args.max_iter))
        s = runs[-1]['summary']
        for mode in (m for m in s if isinstance(s[m], dict)):
            logger.info(f'tol {tol:g}, {mode} start: {s[mode]["mean_f_evals"]:.2f} '
                        f'f-evaluations per frame ({s[mode]["mean_f_evals_after_first"]:.2f} '
                        f'without the first frames, {s[mode]["saving"]:.2f}x fewer than '
                        f'cold), {s[mode]["missed_tol"]} frames missed the tolerance, mIoU '
                        f'{s[mode]["mIoU"]:.2f}')
        logger.info(f'tol {tol:g}: warm start {s["saving"]:.2f}x fewer f-evaluations per '
                    f'frame, mIoU difference {s["mIoU_diff"]:+.3f}, {s["cold_restarts"]} cold '
                    f'restarts at {args.num_sequences - 1} scene cuts')
    result = dict(config=args.config, checkpoint=args.checkpoint, seed=args.seed,
                  size=list(args.size), forward=list(args.forward), drift=list(args.drift),
                  runs=runs)
    with open(osp.join(args.out_dir, 'video_warm_start.json'), 'w') as f:
        json.dump(result, f, indent=1)
    plot = args.plot or osp.join(args.out_dir, 'video_warm_start.png')
    plot_warm_start(plot, runs[0], title=f'{args.num_sequences} generated sequences of '
                    f'{args.num_frames} frames, {osp.basename(args.config)}')
    logger.info(f'plot of tol {args.tol[0]:g}: {plot}')
    return result


if __name__ == '__main__':
    main()
