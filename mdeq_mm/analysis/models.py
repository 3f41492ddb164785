"""Models to measure: configs to CPU-ready models, MDEQ budget overrides, trained weights."""
import logging
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional, Tuple

import torch
from mmengine.config import Config
from torch import nn

from mdeq_mm.models import MDEQ


def load_config(path: str) -> Config:
    """An mmengine Config from a file or an ``mmseg::`` / ``mmpretrain::`` name."""
    if '::' in path:
        from mmengine.hub import get_config
        return get_config(path)
    return Config.fromfile(path)


def without_sync_bn(node: Any) -> Any:
    """A copy of a config node with every SyncBN norm replaced by BN (SyncBN needs GPUs)."""
    if isinstance(node, dict):
        out = {k: without_sync_bn(v) for k, v in node.items()}
        if out.get('type') == 'SyncBN':
            out['type'] = 'BN'
        return out
    if isinstance(node, (list, tuple)):
        return type(node)(without_sync_bn(v) for v in node)
    return node


def build_model(cfg: Config,
                backbone: Optional[Dict[str, Any]] = None,
                checkpoint: Optional[str] = None) -> nn.Module:
    """Build ``cfg.model`` for a CPU-only or single-GPU run.

    SyncBN becomes BN, ``pretrained`` and the backbone's ``init_cfg`` are dropped (no
    downloads), and the keys of ``backbone`` replace the backbone's settings. The weights are
    randomly initialized, then loaded from ``checkpoint`` if given.

    Args:
        cfg (Config): An mmseg or mmpretrain config with a ``model``.
        backbone (dict, optional): Backbone settings to override. Defaults to None.
        checkpoint (str, optional): Weights to load (strict). Defaults to None.

    Returns:
        nn.Module: The model, in training mode.
    """
    import mdeq_mm  # noqa: F401  (registers the MDEQ components)
    from mmengine.logging import MMLogger
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import load_checkpoint

    model_cfg = without_sync_bn(cfg.model.to_dict())
    model_cfg.pop('pretrained', None)
    model_cfg['backbone'].pop('init_cfg', None)
    model_cfg['backbone'].update(backbone or {})
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model = MODELS.build(model_cfg)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every parameter at INFO
    try:
        model.init_weights()
        if checkpoint:
            load_checkpoint(model, checkpoint, map_location='cpu', strict=True,
                            logger='silent')
    finally:
        logger.setLevel(level)
    return model


def find_mdeq(model: nn.Module) -> Optional[MDEQ]:
    """The model's MDEQ backbone, or None."""
    backbone = getattr(model, 'backbone', None)
    return backbone if isinstance(backbone, MDEQ) else None


def build_mdeq_model(config: str, cfg_options: Optional[dict] = None,
                     checkpoint: Optional[str] = None) -> Tuple[Config, nn.Module, MDEQ]:
    """The config (``cfg_options`` merged), its model (``checkpoint`` loaded, built with seed 0)
    in eval mode and the model's MDEQ backbone: what the MDEQ analysis tools start from.

    Raises:
        ValueError: The model has no MDEQ backbone.
    """
    cfg = load_config(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    torch.manual_seed(0)
    model = build_model(cfg, checkpoint=checkpoint).eval()
    mdeq = find_mdeq(model)
    if mdeq is None:
        raise ValueError(f'the model of {config} has no MDEQ backbone')
    return cfg, model, mdeq


@contextmanager
def cold_start(mdeq: MDEQ) -> Iterator[None]:
    """Solve from zeros inside, even if the backbone has a learned initializer.

    Example:
        >>> mdeq = MDEQ(arch=dict(num_channels=(8, 16)), initializer=dict(type='MDEQInitializer'))
        >>> with cold_start(mdeq):
        ...     print(mdeq.initializer)
        None
        >>> type(mdeq.initializer).__name__
        'MDEQInitializer'
    """
    initializer = mdeq.initializer
    mdeq.initializer = None
    try:
        yield
    finally:
        mdeq.initializer = initializer


def task_of(model: nn.Module) -> str:
    """'seg' for an mmseg segmentor, 'cls' for an mmpretrain classifier."""
    return 'seg' if hasattr(model, 'decode_head') else 'cls'


def mdeq_budgets(gradient: str,
                 f_evals: int,
                 backward_f_evals: Optional[int] = None,
                 tol: float = 0.0,
                 phantom: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """MDEQ backbone overrides for a gradient kind and an f-evaluation budget.

    Args:
        gradient (str): 'implicit', 'phantom' or 'unrolled'.
        f_evals (int): Forward Broyden budget, or unrolled layers.
        backward_f_evals (int, optional): Implicit backward budget (VJPs); defaults to
            ``f_evals``.
        tol (float): Relative-residual tolerance of both solves; 0 spends the whole budget,
            so that memory and time are compared at exactly ``f_evals``. Defaults to 0.
        phantom (dict, optional): The phantom gradient's ``k`` and ``tau``.

    Returns:
        dict: Keys of :class:`~mdeq_mm.models.MDEQ` to override.

    Example:
        >>> mdeq_budgets('unrolled', 26)
        {'deq_mode': 'unrolled', 'unrolled_layers': 26}
    """
    if gradient == 'unrolled':
        return dict(deq_mode='unrolled', unrolled_layers=f_evals)
    forward = dict(type='broyden', max_iter=f_evals, tol=tol, stop_mode='rel')
    if gradient == 'implicit':
        # no stagnation stop: the backward spends exactly its budget, like the forward
        backward = dict(type='implicit', solver='broyden', max_iter=backward_f_evals or f_evals,
                        tol=tol, stall_steps=None)
    elif gradient == 'phantom':
        backward = dict(type='phantom', **(phantom or {}))
    else:
        raise ValueError(f"gradient must be 'implicit', 'phantom' or 'unrolled', got "
                         f'{gradient!r}')
    return dict(deq_mode='equilibrium', forward_solver=forward, backward=backward)
