"""The evaluation forward from the learned start against the cold start, at a trained state.

The model's backbone has a trained :class:`~mdeq_mm.models.layers.MDEQInitializer`; the cold
start is the same model with the initializer switched off (:func:`cold_start`). Both solve to
the config's tolerance within its evaluation budget, in eval mode, on the same batch, timed in
interleaved rounds (cold, learned, cold, learned, ...) in one process.
"""
import dataclasses
import statistics
from typing import Any, Dict

import torch

from .data import generated_scenes, to_inputs
from .models import build_model, cold_start, find_mdeq, load_config
from .timing import RatioSummary, interleaved_times, time_call

STARTS = ('cold', 'learned')


def start_speed(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Time the evaluation forward (backbone and heads) from both starts.

    Args:
        spec (dict): ``config`` (with an initializer), ``checkpoint`` (its trained weights),
            ``size`` (H, W), ``batch``, ``threads``, ``rounds``.

    Returns:
        dict: Per start ``times_s`` (one per round), ``time_s`` (median) and the forward
        solve's ``steps`` (batch mean), ``nfe`` (batched f-evaluations) and ``rel_res``
        (batch mean); ``learned_over_cold``: the RatioSummary of the per-round times.
    """
    torch.manual_seed(0)
    torch.set_num_threads(spec['threads'])
    model = build_model(load_config(spec['config']), checkpoint=spec['checkpoint']).eval()
    mdeq = find_mdeq(model)
    if mdeq is None or mdeq.initializer is None:
        raise ValueError(f'{spec["config"]} has no MDEQ backbone with an initializer')
    inputs = to_inputs(model, generated_scenes(spec['batch'], *spec['size'])[0])
    solves: Dict[str, Dict[str, float]] = {}

    def forward(start: str) -> float:
        with torch.no_grad():
            if start == 'cold':
                with cold_start(mdeq):
                    seconds = time_call(lambda: model(inputs, mode='tensor'))
            else:
                seconds = time_call(lambda: model(inputs, mode='tensor'))
        stats = mdeq.last_forward_stats.to_dict()
        solves[start] = {k: stats[k] for k in ('steps', 'nfe', 'rel_res')}
        return seconds

    for start in STARTS:  # untimed first calls: allocations, weight-norm caches
        forward(start)
    times = interleaved_times({s: (lambda s=s: forward(s)) for s in STARTS}, spec['rounds'])
    result: Dict[str, Any] = {
        s: dict(times_s=times[s], time_s=statistics.median(times[s]), **solves[s])
        for s in STARTS
    }
    result['learned_over_cold'] = dataclasses.asdict(
        RatioSummary.of(times['learned'], times['cold']))
    return result
