"""Training steps of MDEQ-small (implicit gradient) and HRNet-W18 FCN at Cityscapes size.

The python part of ``tools/check_gpu.sh``. Both models come from the shipped configs; each step
is mmengine's own ``model.train_step`` (data preprocessor, loss, backward, SGD step) on a
synthetic batch, with ``AmpOptimWrapper`` (``amp``) or ``OptimWrapper`` (``fp32``). Per model
and precision it records the first step (time, ``torch.cuda.max_memory_allocated``) and the
median time of the following steps, and writes ``report.json`` and ``report.md`` to
``--work-dir``. AMP needs a GPU (mmengine's ``AmpOptimWrapper``); on the CPU, peak memory is not
measured.

Examples:
    python tools/misc/check_gpu.py --device cuda --work-dir work_dirs/check_gpu
    python tools/misc/check_gpu.py --device cpu --precision fp32 --size 64 128 --batch 1 \\
        --steps 1 --work-dir work_dirs/check_gpu_cpu    # smoke run on the CPU
"""
import argparse
import datetime
import json
import os
import os.path as osp
import platform
import statistics
import time
from typing import Any, Dict, List, Optional, Sequence

import torch
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, init_default_scope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from mdeq_mm.engine.launch import load_tool_config
from mdeq_mm.models import MDEQ

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = {
    'MDEQ-small (implicit)': 'configs/mdeq/fcn_mdeq-small_4xb3-120k_cityscapes-512x1024.py',
    'HRNet-W18': 'configs/hrnet/fcn_hr18_4xb3-120k_cityscapes-512x1024.py',
}
OPTIM_WRAPPERS = {
    'amp': dict(type='AmpOptimWrapper', loss_scale='dynamic'),
    'fp32': dict(type='OptimWrapper'),
}
MIB = 2**20


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cuda', help="'cuda', 'cuda:N' or 'cpu'")
    parser.add_argument('--precision', nargs='+', choices=sorted(OPTIM_WRAPPERS),
                        default=['amp', 'fp32'], help='optimizer wrappers to run')
    parser.add_argument('--size', nargs=2, type=int, default=(512, 1024), metavar=('H', 'W'),
                        help='input height and width (multiples of 32)')
    parser.add_argument('--batch', type=int, default=3, help='images per step (the configs\' 3)')
    parser.add_argument('--steps', type=int, default=3, help='timed steps after the first')
    parser.add_argument('--work-dir', default=None,
                        help='where the report goes (default: work_dirs/check_gpu/<time>)')
    args = parser.parse_args(argv)
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error(f'--device {args.device}: torch sees no CUDA GPU')
    if not args.device.startswith('cuda') and 'amp' in args.precision:
        parser.error('--precision amp needs a GPU (mmengine AmpOptimWrapper); use fp32 on the CPU')
    if any(s <= 0 or s % 32 for s in args.size):
        parser.error(f'--size must be positive multiples of 32, got {args.size}')
    return args


def synthetic_batch(batch: int, size: Sequence[int], num_classes: int) -> Dict[str, list]:
    """Random uint8 images and labels, shaped like a Cityscapes training batch."""
    gen = torch.Generator().manual_seed(0)
    h, w = size
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen))
        labels = torch.randint(0, num_classes, (1, h, w), generator=gen)
        samples.append(SegDataSample(gt_sem_seg=PixelData(data=labels),
                                     metainfo=dict(img_shape=(h, w), ori_shape=(h, w))))
    return dict(inputs=inputs, data_samples=samples)


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def measure(config: str, precision: str, args: argparse.Namespace) -> Dict[str, Any]:
    """First-step time and peak memory, then the median time of ``args.steps`` more steps."""
    device = torch.device(args.device)
    cfg = load_tool_config(osp.join(REPO, config))
    init_default_scope(cfg.default_scope)
    cfg.model.data_preprocessor.size = tuple(args.size)
    model = revert_sync_batchnorm(MODELS.build(cfg.model)).to(device).train()
    optim_wrapper = build_optim_wrapper(model, dict(cfg.optim_wrapper, **OPTIM_WRAPPERS[precision]))
    data = synthetic_batch(args.batch, args.size, cfg.model.decode_head.num_classes)
    if device.type == 'cuda':
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    times, first_peak = [], None
    for step in range(1 + args.steps):
        synchronize(device)
        start = time.perf_counter()
        log_vars = model.train_step(data, optim_wrapper)
        synchronize(device)
        times.append(time.perf_counter() - start)
        if step == 0 and device.type == 'cuda':
            first_peak = torch.cuda.max_memory_allocated(device) / MIB
    result = dict(
        config=config, precision=precision, first_step_s=times[0],
        median_step_s=statistics.median(times[1:]) if args.steps else None,
        first_step_peak_mib=first_peak,
        peak_mib=torch.cuda.max_memory_allocated(device) / MIB if device.type == 'cuda' else None,
        loss=log_vars['loss'].item())
    backbone = model.backbone
    if isinstance(backbone, MDEQ):
        result.update(fwd_steps=backbone.last_forward_stats.to_dict()['steps'],
                      bwd_steps=backbone.last_backward_stats.to_dict()['steps'])
    return result


def machine(args: argparse.Namespace) -> Dict[str, Any]:
    gpu = torch.cuda.get_device_name(args.device) if args.device.startswith('cuda') else None
    return dict(device=args.device, gpu=gpu, torch=torch.__version__, cuda=torch.version.cuda,
                cpu=platform.processor() or platform.machine(), cpu_count=os.cpu_count(),
                threads=torch.get_num_threads(), size=list(args.size), batch=args.batch,
                timed_steps=args.steps)


def _fmt(value: Optional[float], spec: str) -> str:
    return 'n/a' if value is None else format(value, spec)


def write_markdown(path: str, report: Dict[str, Any]) -> None:
    m = report['machine']
    lines = [
        f'# GPU check, {report["time"]}', '',
        f'Device {m["device"]} ({m["gpu"] or "no GPU"}), torch {m["torch"]} (built for CUDA '
        f'{m["cuda"]}), {m["threads"]} CPU threads; input {m["size"][0]}x{m["size"][1]}, batch '
        f'{m["batch"]}, synthetic data; median over {m["timed_steps"]} steps after the first.',
        '',
        '| model | precision | first step (s) | median step (s) | first-step peak (MiB) '
        '| peak (MiB) | solver steps fwd/bwd | loss |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for name, run in report['runs']:
        solver = (f'{run["fwd_steps"]:.1f}/{run["bwd_steps"]:.1f}'
                  if 'fwd_steps' in run else '-')
        lines.append(
            f'| {name} | {run["precision"]} | {_fmt(run["first_step_s"], ".3f")} '
            f'| {_fmt(run["median_step_s"], ".3f")} | {_fmt(run["first_step_peak_mib"], ".0f")} '
            f'| {_fmt(run["peak_mib"], ".0f")} | {solver} | {run["loss"]:.3f} |')
    with open(path, 'w') as file:
        file.write('\n'.join(lines) + '\n')


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    stamp = datetime.datetime.now().strftime('%Y%m%d_%H%M%S')
    work_dir = args.work_dir or osp.join('work_dirs', 'check_gpu', stamp)
    os.makedirs(work_dir, exist_ok=True)
    runs: List[list] = []
    for name, config in CONFIGS.items():
        for precision in args.precision:
            runs.append([name, measure(config, precision, args)])
            print(f'{name}, {precision}: {json.dumps(runs[-1][1])}', flush=True)
    report = dict(time=stamp, machine=machine(args), runs=runs)
    with open(osp.join(work_dir, 'report.json'), 'w') as file:
        json.dump(report, file, indent=2)
    write_markdown(osp.join(work_dir, 'report.md'), report)
    print(f'report: {osp.join(work_dir, "report.md")}')
    return report


if __name__ == '__main__':
    main()
