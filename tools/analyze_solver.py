"""Solver diagnostics of an MDEQ config: residual curves and anytime inference.

1. Residual against iteration of the forward solve (each of ``--solvers``, the whole budget,
   no early stop) and of the implicit backward solve at the equilibrium, for the config's model
   (randomly initialized, or ``--checkpoint``) on ``--images`` or generated street scenes:
   ``residual_curves.png`` and ``residuals.json``.
2. Anytime inference, with ``--checkpoint``: the task metric (mIoU, top-1) against the
   evaluation step budget (the backbone's ``eval_max_iter``), each budget one pass of the
   mmengine Runner's test loop over the config's test set: ``anytime.png`` and
   ``anytime.json``. Point the config at data with ``--cfg-options``, e.g.
   ``test_dataloader.dataset.data_root=data/mdeq_demo_cityscapes``.

Example:
    python tools/analyze_solver.py \\
        configs/mdeq/fcn_mdeq-tiny_1xb4-300_demo-cityscapes-64x128.py \\
        --checkpoint work_dirs/demo/iter_300.pth --budgets 1 2 4 8 12 \\
        --out-dir work_dirs/demo/solver_analysis
"""
import argparse
import copy
import dataclasses
import json
import os
import os.path as osp
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import DictAction  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from torch.nn.modules.batchnorm import _BatchNorm  # noqa: E402

import benchmark_memory as bm  # noqa: E402
from mdeq_mm.deq import BackwardConfig, StatePacker, solve  # noqa: E402
from mdeq_mm.deq.solve import SOLVERS  # noqa: E402

DEFAULT_SIZE = {'seg': (128, 256), 'cls': (224, 224)}
METRIC_KEYS = ('mIoU', 'accuracy/top1')
RANDOM_LABEL_SEED = 0


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
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
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, xxx=yyy format, e.g. '
        'test_dataloader.dataset.data_root=data/mdeq_demo_cityscapes')
    return parser.parse_args(argv)


def load_cfg(args: argparse.Namespace):
    cfg = bm.load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def load_images(args: argparse.Namespace, task: str,
                stride: int) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """RGB images (N, H, W, 3) and, for generated scenes, their label maps."""
    h, w = args.size or DEFAULT_SIZE[task]
    h, w = max(stride, h // stride * stride), max(stride, w // stride * stride)
    if not args.images:
        return bm.generated_scenes(args.num_images, h, w)
    import mmcv
    images = [mmcv.imresize(mmcv.imread(p, channel_order='rgb'), (w, h)) for p in args.images]
    return np.stack(images), None


def make_samples(model: nn.Module, batch: int, height: int, width: int,
                 labels: Optional[np.ndarray]) -> List[Any]:
    """Data samples for the loss: the scenes' labels, else fixed pseudo-random labels."""
    rng = np.random.default_rng(RANDOM_LABEL_SEED)
    if bm.task_of(model) == 'cls':
        from mmpretrain.structures import DataSample
        targets = rng.integers(0, model.head.num_classes, batch)
        return [DataSample().set_gt_label(int(t)) for t in targets]
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    if labels is None:
        labels = rng.integers(0, model.decode_head.num_classes, (batch, height, width))
    samples = []
    for label in labels:
        sample = SegDataSample(metainfo=dict(img_shape=(height, width),
                                             ori_shape=(height, width)))
        sample.gt_sem_seg = PixelData(data=torch.from_numpy(np.asarray(label)).long()[None])
        samples.append(sample)
    return samples


def forward_curves(model: nn.Module, x: Tensor, solvers: Sequence[str],
                   max_iter: int) -> Dict[str, Dict[str, List[List[float]]]]:
    """Per solver, the relative and absolute residual of every iterate (steps x images)."""
    mdeq = bm.find_mdeq(model)
    with torch.no_grad():
        injection = mdeq.injection_of(x)
        z0 = mdeq.initial_state(injection[0])
        mdeq.f.reset(z0)
        packer = StatePacker(z0)

        def flat_f(z: Tensor) -> Tensor:
            return packer.pack(mdeq.f(packer.unpack(z), injection))

        curves = {}
        for name in solvers:
            _, stats = solve(flat_f, packer.pack(z0), solver=name, max_iter=max_iter, tol=0.0,
                             stop_mode='rel')
            curves[name] = {'rel': stats.rel_trace.tolist(), 'abs': stats.abs_trace.tolist()}
    return curves


def backward_curve(model: nn.Module, x: Tensor, samples: List[Any],
                   max_iter: int) -> Tuple[str, Dict[str, List[List[float]]]]:
    """Residuals of the implicit backward solve of one training step at the equilibrium.

    The forward and backward solves get ``max_iter`` steps and no early stop; BatchNorm stays in
    eval mode (running statistics), dropout is active as in training. A config with the phantom
    gradient is analyzed with an implicit Broyden backward.
    """
    mdeq = bm.find_mdeq(model)
    deq = mdeq.deq
    solver = deq.backward_cfg.solver.type if deq.backward_cfg.type == 'implicit' else 'broyden'
    saved = deq.forward_cfg, deq.backward_cfg, mdeq.deq_mode
    deq.forward_cfg = dataclasses.replace(deq.forward_cfg, max_iter=max_iter, tol=0.0)
    deq.backward_cfg = BackwardConfig.from_dict(
        dict(type='implicit', solver=solver, max_iter=max_iter, tol=0.0, on_fail='accept'))
    mdeq.deq_mode = 'equilibrium'
    model.train()
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.eval()
    try:
        loss, _ = model.parse_losses(model.loss(x, samples))
        loss.backward()
        stats = mdeq.last_backward_stats
    finally:
        deq.forward_cfg, deq.backward_cfg, mdeq.deq_mode = saved
        model.eval()
        model.zero_grad(set_to_none=True)
    return solver, {'rel': stats.rel_trace.tolist(), 'abs': stats.abs_trace.tolist()}


def plot_curves(path: str, forward: Dict[str, dict], backward: Tuple[str, dict],
                title: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    series = [(axes[0], name, c) for name, c in forward.items()]
    series.append((axes[1], f'implicit backward ({backward[0]})', backward[1]))
    # lines: mean over the images; bands: min to max
    for i, (ax, name, curve) in enumerate(series):
        rel = np.asarray(curve['rel'])
        steps = np.arange(1, rel.shape[0] + 1)
        ax.semilogy(steps, rel.mean(axis=1), color=f'C{i}', label=name)
        if rel.shape[1] > 1:
            ax.fill_between(steps, rel.min(axis=1), rel.max(axis=1), color=f'C{i}', alpha=0.2)
    for ax, what in zip(axes, ('forward', 'backward')):
        ax.set_xlabel('solver step (f-evaluations)')
        ax.set_ylabel('relative residual ||f(z)-z|| / ||f(z)||')
        ax.set_title(f'{what} solve')
        ax.axhline(0.05, color='gray', ls=':', label='0.05 (rule of thumb)')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def anytime_inference(cfg, checkpoint: str, budgets: Sequence[int], metric: Optional[str],
                      work_dir: str, logger: MMLogger) -> Dict[str, Any]:
    """The test metric for each evaluation budget, one Runner test pass per budget."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    cfg = copy.deepcopy(cfg)
    cfg.load_from = checkpoint
    cfg.work_dir = work_dir
    cfg.launcher = 'none'
    # The budget is set here, so a DEQEvalBudgetHook in the config must not override it.
    cfg.custom_hooks = [h for h in cfg.get('custom_hooks', [])
                        if h.get('type') != 'DEQEvalBudgetHook']
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    mdeq = bm.find_mdeq(model)
    if mdeq is None:
        raise ValueError(f'the model of {cfg.filename} has no MDEQ backbone')
    seen: List[Tuple[float, float]] = []
    handle = mdeq.register_forward_hook(
        lambda *_: seen.append((mdeq.last_forward_stats.steps.float().mean().item(),
                                mdeq.last_forward_stats.rel_res.float().mean().item())))
    rows = []
    try:
        for budget in budgets:
            mdeq.eval_max_iter = budget
            seen.clear()
            start = time.perf_counter()
            metrics = runner.test()
            seconds = time.perf_counter() - start
            key = metric or next((k for k in METRIC_KEYS if k in metrics), next(iter(metrics)))
            rows.append(dict(budget=budget, metric=key, value=float(metrics[key]),
                             metrics={k: float(v) for k, v in metrics.items()},
                             mean_steps=float(np.mean([s for s, _ in seen])),
                             mean_rel_res=float(np.mean([r for _, r in seen])),
                             seconds=seconds))
            logger.info(f'budget {budget}: {key} {metrics[key]:.2f}, mean rel. residual '
                        f'{rows[-1]["mean_rel_res"]:.3f} ({seconds:.1f} s)')
    finally:
        handle.remove()
    return dict(checkpoint=checkpoint, rows=rows)


def plot_anytime(path: str, result: Dict[str, Any], title: str) -> None:
    rows = result['rows']
    budgets = [r['budget'] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(budgets, [r['value'] for r in rows], 'o-', color='C0')
    ax.set_xlabel('evaluation budget (forward solver steps)')
    ax.set_ylabel(rows[0]['metric'], color='C0')
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.plot(budgets, [r['mean_rel_res'] for r in rows], 's--', color='C1')
    twin.set_ylabel('mean final relative residual', color='C1')
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    logger = MMLogger.get_instance('mdeq_analyze_solver',
                                   log_file=osp.join(args.out_dir, 'analyze_solver.log'))
    cfg = load_cfg(args)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = bm.build_model(cfg)
    if args.checkpoint:
        from mmengine.runner import load_checkpoint
        load_checkpoint(model, args.checkpoint, map_location='cpu', logger=logger)
    model.to(device).eval()
    mdeq = bm.find_mdeq(model)
    if mdeq is None:
        raise ValueError(f'the model of {args.config} has no MDEQ backbone')

    images, labels = load_images(args, bm.task_of(model), mdeq.total_stride)
    x = bm.normalize(model, images).to(device)
    height, width = x.shape[-2:]
    samples = [s.to(device) for s in make_samples(model, len(x), height, width, labels)]
    name = osp.splitext(osp.basename(args.config))[0]
    logger.info(f'residual curves of {name} on {len(x)} image(s) of {height}x{width}, '
                f'{args.max_iter} steps ...')
    forward = forward_curves(model, x, args.solvers, args.max_iter)
    backward = backward_curve(model, x, samples, args.max_iter)
    weights = 'checkpoint' if args.checkpoint else 'random init'
    plot_curves(osp.join(args.out_dir, 'residual_curves.png'), forward, backward,
                f'{name} ({weights})')
    result: Dict[str, Any] = dict(
        config=args.config, checkpoint=args.checkpoint, size=[height, width],
        images=args.images or f'{len(x)} generated scenes', max_iter=args.max_iter,
        forward=forward, backward={'solver': backward[0], **backward[1]})
    for solver, curve in forward.items():
        logger.info(f'forward {solver}: final mean relative residual '
                    f'{np.mean(curve["rel"][-1]):.3f}')
    logger.info(f'backward {backward[0]}: final mean relative residual '
                f'{np.mean(backward[1]["rel"][-1]):.3f}')
    with open(osp.join(args.out_dir, 'residuals.json'), 'w', encoding='utf-8') as f:
        json.dump(result, f)

    if args.checkpoint:
        anytime = anytime_inference(cfg, args.checkpoint, args.budgets, args.metric,
                                    osp.join(args.out_dir, 'work_dir'), logger)
        plot_anytime(osp.join(args.out_dir, 'anytime.png'), anytime, name)
        with open(osp.join(args.out_dir, 'anytime.json'), 'w', encoding='utf-8') as f:
            json.dump(anytime, f, indent=1)
        result['anytime'] = anytime
    else:
        logger.info('no --checkpoint: skipping the anytime-inference curve')
    logger.info(f'wrote {args.out_dir}')
    return result


if __name__ == '__main__':
    main()
