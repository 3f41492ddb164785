"""Benchmark MDEQ-small against HRNet-W18 at initialization and at a trained state.

Writes results.json, results.md (with goal rows met / not met) and PNG plots into --out-dir.
The trained state comes from a short training run of
configs/mdeq/fcn_mdeq-small_1xb2-150it_demo-cityscapes-64x128.py on generated street scenes
(done by this command, a few minutes), or from --checkpoint. See mdeq_mm/analysis for what is
measured and how.

Examples:
    python tools/analysis_tools/benchmark.py --out-dir work_dirs/benchmark
    python tools/analysis_tools/benchmark.py --out-dir work_dirs/benchmark \\
        --checkpoint work_dirs/benchmark/trained_state/iter_150.pth --compile
    python tools/analysis_tools/benchmark.py --quick --out-dir work_dirs/benchmark_quick
"""
import argparse
import os
import os.path as osp
import sys

from mdeq_mm.analysis import BenchmarkSettings, run_benchmark, write_report
from mdeq_mm.engine.launch import tool_parser

CONFIGS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs',
                   'mdeq')
MDEQ_CONFIG = osp.join(CONFIGS, 'fcn_mdeq-small_4xb3-120k_cityscapes-512x1024.py')
RECIPE_CONFIG = osp.join(CONFIGS, 'fcn_mdeq-small-jfb-fpc-jr_4xb3-120k_cityscapes-512x1024.py')
TRAIN_CONFIG = osp.join(CONFIGS, 'fcn_mdeq-small_1xb2-150it_demo-cityscapes-64x128.py')
INIT_CONFIG = osp.join(CONFIGS, 'fcn_mdeq-small-init_1xb2-8it_demo-cityscapes-64x128.py')
DEMO_CONFIG = osp.join(CONFIGS, 'fcn_mdeq-tiny_1xb4-300it_demo-cityscapes-64x128.py')
DEMO_RECIPE_CONFIG = osp.join(CONFIGS, 'fcn_mdeq-tiny-jfb-fpc_1xb4-300it_demo-cityscapes-64x128.py')
DEMO_INIT_CONFIG = osp.join(CONFIGS, 'fcn_mdeq-tiny-init_1xb4-15it_demo-cityscapes-64x128.py')
HRNET_W18 = 'mmseg::hrnet/fcn_hr18_4xb2-80k_cityscapes-512x1024.py'
HRNET_W18_SMALL = 'mmseg::hrnet/fcn_hr18s_4xb2-80k_cityscapes-512x1024.py'


def full_settings() -> BenchmarkSettings:
    """MDEQ-small (implicit and the recommended recipe) against HRNet-W18 at 128x256, batch
    2, 1 and 2 threads; its evaluation forward from a learned start."""
    return BenchmarkSettings(seg_config=MDEQ_CONFIG, train_config=TRAIN_CONFIG,
                             hrnet_config=HRNET_W18, hrnet='HRNet-W18',
                             recipe_config=RECIPE_CONFIG, initializer_config=INIT_CONFIG)


def quick_settings() -> BenchmarkSettings:
    """The tiny demo MDEQ against HRNet-W18-Small at 64x128: every part, in about a minute."""
    return BenchmarkSettings(
        seg_config=DEMO_CONFIG, train_config=DEMO_CONFIG, hrnet_config=HRNET_W18_SMALL,
        hrnet='HRNet-W18-Small', recipe_config=DEMO_RECIPE_CONFIG,
        initializer_config=DEMO_INIT_CONFIG, initializer_iters=2, mdeq='MDEQ-tiny (demo)',
        size=(64, 128), threads=(1, ), rounds=2, memory_f_evals=6, sweep=(2, 8), solver_steps=6,
        solver_rounds=1, f_rounds=2, train_iters=3)


def parse_args(argv=None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    parser.add_argument('--out-dir', required=True, help='folder for the reports')
    parser.add_argument('--quick', action='store_true',
                        help='tiny demo MDEQ, 64x128, few steps (a smoke test)')
    parser.add_argument('--checkpoint', help='weights of the trained state (skips training)')
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'), help='input size')
    parser.add_argument('--batch', type=int, help='batch size')
    parser.add_argument('--threads', type=int, nargs='+', help='torch thread counts')
    parser.add_argument('--rounds', type=int, help='interleaved rounds of training steps')
    parser.add_argument('--sweep', type=int, nargs='+',
                        help='f-evaluation budgets of the memory sweep (besides 26); the flat '
                        'memory goal compares the largest with the smallest')
    parser.add_argument('--compile', action='store_true',
                        help='also measure torch.compile of f (minutes of compile time)')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    settings = quick_settings() if args.quick else full_settings()
    for name in ('size', 'batch', 'threads', 'rounds', 'sweep'):
        value = getattr(args, name)
        if value is not None:
            setattr(settings, name, tuple(value) if isinstance(value, list) else value)
    settings.compile_f = args.compile
    os.makedirs(args.out_dir, exist_ok=True)
    command = ' '.join(['python tools/analysis_tools/benchmark.py', *(argv or sys.argv[1:])])
    results = run_benchmark(settings, args.out_dir, args.checkpoint, command)
    write_report(results, args.out_dir)
    return results


if __name__ == '__main__':
    main()
