"""A trained state to measure at: a short run of a config with mmengine's Runner.

A randomly initialized MDEQ has no accurate fixed point (its solves stall at a relative
residual of 0.2-0.4), so solver work measured there is not what training sees. A few hundred
iterations of the demo recipe (unrolled warm-up, then implicit training) on generated street
scenes give a state whose solves converge like a trained model's.
"""
import logging
import os.path as osp
from typing import Optional

import torch

from .models import load_config

DEMO_SCENES = dict(num_train=24, num_val=2, height=128, width=256, seed=0)


def train_checkpoint(config: str,
                     work_dir: str,
                     threads: Optional[int] = None,
                     iters: Optional[int] = None,
                     load_from: Optional[str] = None) -> str:
    """Train ``config`` on generated street scenes and return its final checkpoint.

    The scenes are written under ``work_dir`` and validation is switched off; everything else
    is the config's unless overridden. Run it in a fresh process: the Runner sets up logging
    and seeds globally.

    Args:
        config (str): An mmseg config of an MDEQ segmentor on the Cityscapes layout.
        work_dir (str): Folder for the data, logs and checkpoint.
        threads (int, optional): Torch threads. Defaults to torch's setting.
        iters (int, optional): Training iterations instead of the config's (a warm-up
            given as ``warmup_ratio`` scales with them).
        load_from (str, optional): Weights to start from (e.g. a trained segmentor whose
            learned initializer the config trains). Defaults to None.

    Returns:
        str: Path of the checkpoint after the last iteration.
    """
    import mdeq_mm  # noqa: F401  (registers the MDEQ components)
    from mmengine.logging import MMLogger
    from mmengine.registry import RUNNERS

    from mdeq_mm.datasets import generate_cityscapes_like

    if threads:
        torch.set_num_threads(threads)
    data_root = generate_cityscapes_like(osp.join(work_dir, 'data'), **DEMO_SCENES)
    cfg = load_config(config)
    cfg.work_dir = work_dir
    cfg.launcher = 'none'
    cfg.train_dataloader.dataset.data_root = data_root
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator', 'test_dataloader', 'test_cfg',
                'test_evaluator'):
        cfg[key] = None
    cfg.default_hooks.pop('visualization', None)
    cfg.custom_hooks = [h for h in cfg.custom_hooks if h['type'] != 'DEQEvalBudgetHook']
    if iters is not None:
        cfg.train_cfg.max_iters = iters
        cfg.default_hooks.checkpoint.interval = iters
        for scheduler in cfg.param_scheduler:
            scheduler.end = min(scheduler.end, iters)
    if load_from is not None:
        cfg.load_from = load_from
    cfg.log_level = 'WARNING'
    runner = RUNNERS.build(cfg)
    MMLogger.get_current_instance().setLevel(logging.WARNING)
    runner.train()
    return osp.join(work_dir, f'iter_{cfg.train_cfg.max_iters}.pth')
