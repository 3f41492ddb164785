"""Warm-started video inference measured: f-evaluations per frame and mIoU, cold vs warm, and
with a learned initializer, from its learned start with and without the warm start."""
import dataclasses
from contextlib import nullcontext
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from mdeq_mm.apis import VideoWarmStart

from .models import cold_start, find_mdeq
from .report import new_figure, save_figure

MODES = ('cold', 'warm')
# with a learned initializer: its start on every frame, and on the frames a warm start lacks
LEARNED_MODES = ('learned', 'warm+learned')
COLOURS = dict(cold='tab:blue', warm='tab:orange', learned='tab:green',
               **{'warm+learned': 'tab:red'})
IGNORE_INDEX = 255
STREAM = 'video'


def _miou(intersect: np.ndarray, union: np.ndarray) -> float:
    """Mean IoU in percent over the classes present in the labels or the predictions."""
    present = union > 0
    return float(100 * np.mean(intersect[present] / union[present]))


def run_sequences(model: nn.Module, sequences: Sequence[Tuple[np.ndarray, np.ndarray]],
                  warm: bool) -> Dict[str, Any]:
    """Segment the sequences as one video, each frame with ``mmseg.apis.inference_model``.

    Args:
        model (nn.Module): An mmseg segmentor from ``mmseg.apis.init_model`` with an MDEQ
            backbone, in eval mode.
        sequences (Sequence[tuple]): Per sequence its RGB frames (T, H, W, 3) uint8 and
            train-id labels (T, H, W); played one after the other, so the first frame of each
            but the first is a scene cut.
        warm (bool): Start each frame's solve from the previous frame's equilibrium
            (:class:`VideoWarmStart`) instead of zeros.

    Returns:
        dict: Per frame ``f_evals``, ``rel_res`` (the returned iterate's), ``rel_trace``
        (the relative residual at every evaluation of f) and ``cold_restart``; the ``mIoU``
        over all frames and ``sequence_mIoU`` per sequence.
    """
    from mmseg.apis import inference_model
    from mmseg.evaluation import IoUMetric

    mdeq = find_mdeq(model)
    num_classes = model.decode_head.num_classes
    warm_start = VideoWarmStart(model)
    out: Dict[str, Any] = dict(f_evals=[], rel_res=[], rel_trace=[], cold_restart=[],
                               sequence_mIoU=[])
    total = np.zeros((2, num_classes))
    for frames, labels in sequences:
        seq_total = np.zeros((2, num_classes))
        for frame, label in zip(frames, labels):
            bgr = np.ascontiguousarray(frame[..., ::-1])
            if warm:
                with warm_start.next_frames([STREAM]):
                    result = inference_model(model, bgr)
                out['cold_restart'].append(bool(warm_start.last_cold_restart[0]))
            else:
                result = inference_model(model, bgr)
                out['cold_restart'].append(False)
            stats = mdeq.last_forward_stats
            out['f_evals'].append(int(mdeq.last_f_evals[0]))
            out['rel_res'].append(float(stats.rel_res[0]))
            out['rel_trace'].append(stats.rel_trace[:int(stats.steps[0]), 0].tolist())
            inter, union, _, _ = IoUMetric.intersect_and_union(
                result.pred_sem_seg.data[0].cpu(), torch.from_numpy(label.astype(np.int64)),
                num_classes, IGNORE_INDEX)
            seq_total += np.stack([inter.numpy(), union.numpy()])
        out['sequence_mIoU'].append(_miou(*seq_total))
        total += seq_total
    out['mIoU'] = _miou(*total)
    return out


def measure_warm_start(model: nn.Module,
                       sequences: Sequence[Tuple[np.ndarray, np.ndarray]],
                       tol: float,
                       max_iter: int) -> Dict[str, Any]:
    """Cold vs warm start on the same video, all solving to the same tolerance.

    The backbone's forward solver keeps its type and settings but gets ``tol``, the budget
    ``max_iter`` and a stop check after every step for every run (restored afterwards), so
    the f-evaluations per frame are the work each frame needs to reach one residual. A
    backbone with a learned initializer is also run from its learned start on every frame
    (``learned``) and on the first frame and after the cuts of the warm start
    (``warm+learned``); ``cold`` and ``warm`` then start from zeros.

    Args:
        model (nn.Module): An mmseg segmentor from ``mmseg.apis.init_model`` with an MDEQ
            backbone.
        sequences (Sequence[tuple]): RGB frames and labels per sequence (see
            :func:`run_sequences`).
        tol (float): Tolerance of the forward solve (its ``stop_mode``, relative by default).
        max_iter (int): Budget of f-evaluations per frame.

    Returns:
        dict: ``tol``, ``max_iter``, ``stop_mode``, ``sequence_lengths``, the
        :func:`run_sequences` result of each mode under its name, and a ``summary``: per mode
        the mean f-evaluations per frame (all frames, and without the first frame of each
        sequence), the cold start's over them (``saving``), the frames that missed ``tol`` and
        the mIoU; the warm start's ``saving`` and ``mIoU_diff`` against the cold start, and
        its number of cold restarts.
    """
    mdeq = find_mdeq(model)
    if mdeq is None:
        raise ValueError(f'{type(model).__name__} has no MDEQ backbone')
    model.eval()
    saved = mdeq.deq.forward_cfg, mdeq.eval_max_iter
    mdeq.deq.forward_cfg = dataclasses.replace(saved[0], tol=tol, max_iter=max_iter,
                                               check_every=1)
    mdeq.eval_max_iter = None
    modes = MODES + (LEARNED_MODES if mdeq.initializer is not None else ())
    runs = {}
    try:
        for mode in modes:
            with cold_start(mdeq) if mode in MODES else nullcontext():
                runs[mode] = run_sequences(model, sequences, warm=mode.startswith('warm'))
    finally:
        mdeq.deq.forward_cfg, mdeq.eval_max_iter = saved
    lengths = [len(frames) for frames, _ in sequences]
    firsts = set(np.cumsum([0] + lengths[:-1]).tolist())
    summary: Dict[str, Any] = {}
    for mode, run in runs.items():
        f_evals = np.array(run['f_evals'], dtype=float)
        later = [f for i, f in enumerate(f_evals) if i not in firsts]
        summary[mode] = dict(
            mean_f_evals=float(f_evals.mean()),
            mean_f_evals_after_first=float(np.mean(later)) if later else None,
            missed_tol=int(sum(r >= tol for r in run['rel_res'])),
            mIoU=run['mIoU'])
    for mode in runs:
        summary[mode]['saving'] = summary['cold']['mean_f_evals'] / summary[mode]['mean_f_evals']
    summary['saving'] = summary['warm']['saving']
    summary['mIoU_diff'] = summary['warm']['mIoU'] - summary['cold']['mIoU']
    summary['cold_restarts'] = int(sum(runs['warm']['cold_restart']))
    return dict(tol=tol, max_iter=max_iter, stop_mode=mdeq.deq.forward_cfg.stop_mode,
                sequence_lengths=lengths, summary=summary, **runs)


def plot_warm_start(path: str, result: Mapping[str, Any], title: Optional[str] = None) -> None:
    """Residual against f-evaluations for every frame, and f-evaluations per frame, cold vs
    warm, from a :func:`measure_warm_start` result."""
    fig, (curves, per_frame) = new_figure(ncols=2, figsize=(11, 4))
    summary = result['summary']
    modes = [mode for mode in MODES + LEARNED_MODES if mode in result]
    for mode in modes:
        run = result[mode]
        for i, trace in enumerate(run['rel_trace']):
            curves.plot(range(1, len(trace) + 1), trace, color=COLOURS[mode], alpha=0.25,
                        lw=0.8, label=f'{mode} start' if i == 0 else None)
        per_frame.plot(run['f_evals'], 'o-', ms=2.5, lw=1, color=COLOURS[mode],
                       label=f'{mode}: mean {summary[mode]["mean_f_evals"]:.1f}, '
                       f'mIoU {summary[mode]["mIoU"]:.2f}')
    curves.axhline(result['tol'], color='k', ls='--', lw=0.8, label=f'tolerance {result["tol"]:g}')
    curves.set_yscale('log')
    curves.set_xlabel('f-evaluations')
    curves.set_ylabel('relative residual ||f(z) - z|| / ||f(z)||')
    curves.set_title('each frame\'s solve')
    starts: List[int] = np.cumsum(result['sequence_lengths'][:-1]).tolist()
    for i, start in enumerate(starts):
        per_frame.axvline(start, color='grey', ls=':', lw=0.8,
                          label='scene cut' if i == 0 else None)
    per_frame.set_xlabel('frame')
    per_frame.set_ylabel(f'f-evaluations to tolerance {result["tol"]:g}')
    best = max(modes, key=lambda mode: summary[mode]['saving'])
    per_frame.set_title(f'{best}: {summary[best]["saving"]:.1f}x fewer f-evaluations per frame')
    for ax in (curves, per_frame):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path, title)
