"""Real-data learning benchmark: MDEQ against a plain baseline of the same toolbox.

Digits (mmpretrain): scikit-learn's 1,797 real handwritten digits (16x16), MDEQ-tiny against
ResNet-18 (CIFAR), and MDEQ-tiny with the previous default initialization.
Cityscapes frame (mmseg): MDEQ-tiny against HRNetV2-W18-Small over-fitting one real frame
(given with --cityscapes-root, in the Cityscapes folder layout, val split).
Each model trains in a fresh process with the same data, schedule and seed (--seed); the tool writes
learning curves (PNG per task), all curves and solver statistics (JSON) and a Markdown summary
with goal rows.

Example:
    python tools/analysis_tools/learning_benchmark.py --cityscapes-root data/cityscapes_frame
"""
import argparse
import json
import math
import os
import os.path as osp
from typing import Dict, List

from mmengine.logging import print_log

from mdeq_mm.analysis.learning_curves import (Contender, LearningCurve, plot_learning_curves,
                                              train_contender)
from mdeq_mm.datasets import write_digits_dataset
from mdeq_mm.engine.launch import tool_parser

CONFIGS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs')
MDEQ_DIGITS = osp.join(CONFIGS, 'mdeq', 'mdeq-tiny_1xb32-300it_digits-16x16.py')
RESNET_DIGITS = osp.join(CONFIGS, 'resnet', 'resnet18_1xb32-300it_digits-16x16.py')
MDEQ_FRAME = osp.join(CONFIGS, 'mdeq', 'fcn_mdeq-tiny_1xb2-120it_cityscapes-frame-128x256.py')
HRNET_FRAME = osp.join(CONFIGS, 'hrnet', 'fcn_hr18s_1xb2-120it_cityscapes-frame-128x256.py')
# The initialization this package used before the learning benchmark existed: PyTorch's
# defaults in the backbone, Kaiming in the neck, mmpretrain's N(0, 0.01) in the classifier,
# affine post-fusion GroupNorm in MDEQ-tiny.
PREVIOUS_INIT = {
    'model.backbone.init_cfg': None,
    'model.backbone.arch': dict(
        _delete_=True,
        num_channels=(24, 24), stem_stride=1, injection_conv=False, post_gn_affine=True),
    'model.neck.init_cfg': [
        dict(type='Kaiming', layer='Conv2d'),
        dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
    ],
    'model.head.init_cfg': dict(_delete_=True, type='Normal', layer='Linear', std=0.01),
}


def parse_args() -> argparse.Namespace:
    parser = tool_parser(__doc__)
    parser.add_argument('--tasks', nargs='+', choices=['digits', 'cityscapes'],
                        default=['digits', 'cityscapes'])
    parser.add_argument('--cityscapes-root',
                        help='a folder with leftImg8bit/val and gtFine/val (needed for the '
                        'cityscapes task)')
    parser.add_argument('--work-dir', default='work_dirs/learning_benchmark')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch threads per run (1 is fastest on a busy 2-core machine)')
    parser.add_argument('--seed', type=int, default=0,
                        help='randomness.seed of every contender (data order and init)')
    parser.add_argument('--target-accuracy', type=float, default=95.0,
                        help='digits goal: MDEQ top-1 (%%) within the schedule')
    parser.add_argument('--skip-previous-init', action='store_true',
                        help='do not train MDEQ-tiny with the previous initialization')
    return parser.parse_args()


def run_task(name: str, contenders: List[Contender], metric: str, work_dir: str,
             threads: int) -> List[LearningCurve]:
    curves = []
    for contender in contenders:
        run_dir = osp.join(work_dir, name, contender.name.replace(' ', '_').replace(',', ''))
        print_log(f'[{name}] training {contender.name} ({osp.basename(contender.config)}) '
                  f'in {run_dir}', logger='current')
        curves.append(train_contender(contender, run_dir, metric, threads))
        print_log(f'[{name}] {contender.name}: {metric} {curves[-1].metric[-1]:.2f} after '
                  f'{curves[-1].val_iters[-1]} iterations', logger='current')
    plot_learning_curves(curves, osp.join(work_dir, f'learning_curves_{name}.png'),
                         f'{name}: learning curves (same data, schedule and seed)')
    return curves


def summary_rows(curves: List[LearningCurve]) -> List[str]:
    rows = ['| model | ' + ' | '.join(f'@{it}' for it in curves[0].val_iters) +
            ' | loss (last) | s/iter | fwd rel. res. (last) |',
            '|---' * (len(curves[0].val_iters) + 4) + '|']
    for c in curves:
        res = c.solver.get('deq_fwd_rel_res', [float('nan')])[-1]
        rows.append(f'| {c.name} | ' + ' | '.join(f'{m:.1f}' for m in c.metric) +
                    f' | {c.loss[-1]:.3f} | {c.sec_per_iter:.2f} | '
                    f"{'-' if math.isnan(res) else f'{res:.4f}'} |")
    return rows


def main() -> None:
    args = parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    results: Dict[str, List[LearningCurve]] = {}
    lines = [f'# Learning benchmark (seed {args.seed})', '']
    goals = []
    if 'digits' in args.tasks:
        data_root = osp.join(args.work_dir, 'data', 'digits')
        write_digits_dataset(data_root)
        data = {f'{split}_dataloader.dataset.data_root': data_root for split in ('train', 'val')}
        data['randomness.seed'] = args.seed
        contenders = [Contender('MDEQ-tiny', MDEQ_DIGITS, dict(data))]
        if not args.skip_previous_init:
            contenders.append(
                Contender('MDEQ-tiny, previous init', MDEQ_DIGITS, {**data, **PREVIOUS_INIT}))
        contenders.append(Contender('ResNet-18', RESNET_DIGITS, dict(data)))
        curves = results['digits'] = run_task('digits', contenders, 'accuracy/top1',
                                              args.work_dir, args.threads)
        mdeq = curves[0]
        reached = mdeq.first_iter_reaching(args.target_accuracy)
        goals.append(f'| MDEQ-tiny top-1 >= {args.target_accuracy:g}% on the digits test split '
                     f'within {mdeq.val_iters[-1]} iterations | {max(mdeq.metric):.1f}% '
                     f"(first at {reached}) | {'met' if reached else 'NOT met'} |")
        if not args.skip_previous_init:
            previous = curves[1]
            better = sum(mdeq.metric) >= sum(previous.metric)
            goals.append('| MDEQ-tiny curve at least as good as with the previous init (mean '
                         f'top-1 over validations) | {sum(mdeq.metric) / len(mdeq.metric):.1f}% '
                         f'vs {sum(previous.metric) / len(previous.metric):.1f}% | '
                         f"{'met' if better else 'NOT met'} |")
        lines += ['## Digits: top-1 (%) on the test split', ''] + summary_rows(curves) + [
            '', '![digits](learning_curves_digits.png)', '']
    if 'cityscapes' in args.tasks:
        if not args.cityscapes_root:
            raise SystemExit('the cityscapes task needs --cityscapes-root')
        data = {f'{split}_dataloader.dataset.data_root': args.cityscapes_root
                for split in ('train', 'val')}
        data['randomness.seed'] = args.seed
        contenders = [Contender('MDEQ-tiny', MDEQ_FRAME, data),
                      Contender('HRNet-W18-Small', HRNET_FRAME, data)]
        curves = results['cityscapes'] = run_task('cityscapes', contenders, 'mIoU',
                                                  args.work_dir, args.threads)
        lines += ['## Cityscapes frame: mIoU (%) on the training frame', ''] + summary_rows(
            curves) + ['', '![cityscapes](learning_curves_cityscapes.png)', '']
    if goals:
        lines += ['## Goals', '', '| goal | measured | status |', '|---|---|---|'] + goals
    with open(osp.join(args.work_dir, 'learning_benchmark.json'), 'w', encoding='utf-8') as f:
        json.dump({task: [c.to_dict() for c in curves] for task, curves in results.items()},
                  f, indent=1)
    with open(osp.join(args.work_dir, 'learning_benchmark.md'), 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))
    print(f'written to {args.work_dir}')


if __name__ == '__main__':
    main()
