"""What the tools share: the command-line parser of the analysis tools and demos, the launcher
arguments, config loading and runner building of ``tools/train.py`` and ``tools/test.py``, plus
the test tool's visualization, test-time augmentation and checkpoint checks."""
import argparse
import copy
import os
import os.path as osp
import re
from typing import Any, Dict, List, Optional, Sequence

import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from torch import nn

from .distributed import init_cpu_process_group

TOOLBOXES = ('mmseg', 'mmpretrain')
LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
# mmpretrain's test tool draws every sample unless told otherwise; mmseg keeps the hook's interval.
CLS_VIS_INTERVAL = 1
# What mmengine's ``Runner.load_checkpoint`` strips from checkpoint keys by default.
WRAPPER_PREFIX = re.compile(r'^module\.')
MAX_LISTED_KEYS = 10
# Norm types that need CUDA in a multi-process run, and what replaces them on CPU.
SYNC_NORMS = ('SyncBN', 'MMSyncBN')
CPU_NORM = 'BN'
CPU_WRAPPER = 'CPUDistributedDataParallel'
GPU_WRAPPERS = (None, 'MMDistributedDataParallel')


def tool_parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser described by a tool's module docstring: its first paragraph as the
    description, the rest (usually examples) as the epilog, both printed as written.

    Args:
        doc (str): The tool's ``__doc__``.

    Returns:
        argparse.ArgumentParser: The parser, without arguments yet.
    """
    description, _, epilog = doc.strip().partition('\n\n')
    return argparse.ArgumentParser(description=description, epilog=epilog or None,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_launch_args(parser: argparse.ArgumentParser) -> None:
    """Add the arguments mmseg's train and test tools both take: ``--cfg-options``,
    ``--launcher`` and ``--local_rank``."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file.')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_tool_args(parser: argparse.ArgumentParser,
                    argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse ``argv`` (default: the command line) and, as mmseg's tools do, export
    ``--local_rank`` as ``LOCAL_RANK`` unless the launcher has set it."""
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def load_tool_config(config: str,
                     cfg_options: Optional[dict] = None,
                     launcher: str = 'none',
                     work_dir: Optional[str] = None) -> Config:
    """Load ``config`` the way mmseg's tools do.

    Args:
        config (str): Config file path.
        cfg_options (dict, optional): ``--cfg-options`` overrides.
        launcher (str): ``--launcher`` value. Defaults to 'none'.
        work_dir (str, optional): ``--work-dir``; otherwise the config's ``work_dir``, else
            ``./work_dirs/<config name>``.

    Returns:
        Config: The merged config.
    """
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg


def _replace_sync_norms(node: Any) -> int:
    """Replace every SyncBN norm config under ``node`` by BN in place; returns how many."""
    count = 0
    if isinstance(node, dict):
        if node.get('type') in SYNC_NORMS:
            node['type'] = CPU_NORM
            count += 1
        for value in node.values():
            count += _replace_sync_norms(value)
    elif isinstance(node, (list, tuple)):
        count += sum(_replace_sync_norms(value) for value in node)
    return count


def adapt_to_cpu_processes(cfg: Config) -> List[str]:
    """Make any config run multi-process on a CPU-only machine; returns what was changed.

    Without CUDA and with a launcher: the model wrapper becomes ``CPUDistributedDataParallel``
    where the config has none or mmengine's default (``MMDistributedDataParallel``, whose
    ``device_ids`` torch rejects for CPU modules), and every SyncBN norm config of the model
    becomes BN (SyncBN only works on GPUs). Each rank's BN then normalizes with its own batch
    statistics. With CUDA, or in a single process, nothing changes.

    Args:
        cfg (Config): A config with ``launcher``; changed in place.

    Returns:
        list[str]: One sentence per change, for the log.

    Example:
        >>> cfg = Config(dict(launcher='pytorch', model=dict(
        ...     backbone=dict(norm_cfg=dict(type='SyncBN')), head=dict(norm_cfg=dict(type='BN')))))
        >>> notes = adapt_to_cpu_processes(cfg)
        >>> torch.cuda.is_available() or (cfg.model.backbone.norm_cfg.type,
        ...                               cfg.model_wrapper_cfg.type)
        ('BN', 'CPUDistributedDataParallel')
    """
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return []
    notes = []
    wrapper = cfg.get('model_wrapper_cfg') or {}
    if wrapper.get('type') in GPU_WRAPPERS:
        cfg.model_wrapper_cfg = dict(wrapper, type=CPU_WRAPPER)
        notes.append(f'no CUDA: the model wrapper is {CPU_WRAPPER} (DDP over gloo) instead of '
                     f"{wrapper.get('type') or 'MMDistributedDataParallel'}")
    replaced = _replace_sync_norms(cfg.model)
    if replaced:
        notes.append(f'no CUDA: {replaced} SyncBN norm config(s) of the model replaced by BN '
                     '(SyncBN needs GPUs; each process normalizes with its own batch statistics)')
    return notes


def build_runner(cfg: Config) -> Runner:
    """The config's runner (``runner_type`` or mmengine's), also multi-process on CPU.

    Under a launcher on a machine without CUDA, a gloo process group is started first and the
    config is adapted by :func:`adapt_to_cpu_processes` (logged), so that any config, e.g. a
    stock mmseg config with SyncBN or the HRNet baselines, runs with ``tools/dist_train.sh``.
    """
    notes = adapt_to_cpu_processes(cfg)
    if cfg.get('launcher', 'none') == 'pytorch':
        init_cpu_process_group()
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    for note in notes:
        runner.logger.info(note)
    return runner


def toolbox_of(cfg: Config) -> str:
    """'mmseg' or 'mmpretrain': whose conventions the config follows (its ``default_scope``)."""
    scope = cfg.get('default_scope')
    if scope not in TOOLBOXES:
        raise ValueError(f'the config needs default_scope in {TOOLBOXES} to pick the '
                         f'toolbox conventions, got {scope!r}')
    return scope


def enable_visualization(cfg: Config,
                         show: bool = False,
                         show_dir: Optional[str] = None,
                         wait_time: float = 2.0,
                         interval: Optional[int] = None) -> None:
    """Switch on the config's visualization hook as the toolbox's own ``tools/test.py`` does.

    mmseg (``SegVisualizationHook``): ``show_dir`` becomes the visualizer's ``save_dir``, so the
    painted images land in ``show_dir/vis_data/vis_image``; the hook's own ``interval`` applies
    unless ``interval`` is given. mmpretrain (``VisualizationHook``): the hook writes
    ``show_dir/<image name>_0.png`` itself, every ``interval`` samples (default 1).

    Args:
        cfg (Config): A test config with ``default_hooks.visualization``; changed in place.
        show (bool): Display each painted image in a window. Defaults to False.
        show_dir (str, optional): Where to save the painted images. Defaults to None.
        wait_time (float): Seconds each window is shown. Defaults to 2.0.
        interval (int, optional): Paint every ``interval``-th sample (mmseg: batch).
    """
    toolbox = toolbox_of(cfg)
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        kind = 'SegVisualizationHook' if toolbox == 'mmseg' else 'VisualizationHook'
        raise ValueError(f'--show / --show-dir need a visualization hook in the config: '
                         f"default_hooks = dict(visualization=dict(type='{kind}'))")
    if toolbox == 'mmseg':
        hook.draw = True
        if show:
            hook.update(show=True, wait_time=wait_time)
        if show_dir is not None:
            cfg.visualizer.save_dir = show_dir
        if interval is not None:
            hook.interval = interval
    else:
        hook.update(enable=True, show=show, wait_time=wait_time, out_dir=show_dir,
                    interval=CLS_VIS_INTERVAL if interval is None else interval)


def enable_tta(cfg: Config) -> None:
    """Test with the config's ``tta_pipeline`` and wrap the model in its ``tta_model``.

    As in the toolboxes' ``tools/test.py``: mmseg configs must define both (mmseg's Cityscapes
    and runtime base configs do); mmpretrain configs default to flip TTA whose class scores
    are averaged (``AverageClsScoreTTA``).

    Args:
        cfg (Config): A test config; changed in place.
    """
    if toolbox_of(cfg) == 'mmpretrain':
        cfg.setdefault('tta_model', dict(type='mmpretrain.AverageClsScoreTTA'))
        if 'tta_pipeline' not in cfg:
            pipeline = copy.deepcopy(cfg.test_dataloader.dataset.pipeline)
            flips = [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)]
            pipeline[-1] = dict(type='TestTimeAug', transforms=[flips, [pipeline[-1]]])
            cfg.tta_pipeline = pipeline
    missing = [key for key in ('tta_model', 'tta_pipeline') if key not in cfg]
    if missing:
        raise ValueError(f'--tta needs {missing} in the config, e.g. from '
                         "mmseg::_base_/datasets/cityscapes.py and "
                         "mmseg::_base_/default_runtime.py")
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)


class IncompatibleCheckpointError(RuntimeError):
    """A checkpoint whose keys or shapes do not fit the model it was loaded into.

    Attributes:
        missing (list[str]): Model keys the checkpoint lacks.
        unexpected (list[str]): Checkpoint keys the model lacks.
        mismatched (dict[str, tuple]): Key -> (checkpoint shape, model shape).
    """

    def __init__(self, filename: str, missing: List[str], unexpected: List[str],
                 mismatched: Dict[str, tuple]) -> None:
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        lines = [f'{filename} does not fit the model: {len(missing)} missing, '
                 f'{len(unexpected)} unexpected and {len(mismatched)} mis-shaped key(s); '
                 'evaluating it would use random weights for those parts']
        mismatched_lines = [f'{key}: checkpoint {list(ckpt)}, model {list(model)}'
                            for key, (ckpt, model) in mismatched.items()]
        for title, items in (('missing', missing), ('unexpected', unexpected),
                             ('mis-shaped', mismatched_lines)):
            if items:
                more = len(items) - MAX_LISTED_KEYS
                lines.append(f'{title}: ' + ', '.join(items[:MAX_LISTED_KEYS]) +
                             (f' and {more} more' if more > 0 else ''))
        super().__init__('\n'.join(lines))


def load_checkpoint(runner: Runner, filename: str, strict: bool = True) -> dict:
    """Load ``filename`` into the runner's model, as ``load_from`` would, and check the fit.

    The checkpoint goes through ``runner.load_checkpoint`` (so ``after_load_checkpoint`` hooks
    such as EMA see it). mmengine only warns when keys do not fit; with ``strict`` this raises.

    Args:
        runner (Runner): The runner whose model receives the weights.
        filename (str): Checkpoint path or URL.
        strict (bool): Raise :class:`IncompatibleCheckpointError` when a model key is missing
            (BN ``num_batches_tracked`` aside), a checkpoint key is unexpected or a shape
            differs. Defaults to True.

    Returns:
        dict: The loaded checkpoint.
    """
    checkpoint = runner.load_checkpoint(filename, map_location='cpu')
    model: nn.Module = runner.model
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    source = checkpoint.get('state_dict', checkpoint)
    source = {WRAPPER_PREFIX.sub('', key): value for key, value in source.items()}
    target = model.state_dict()
    missing = [k for k in target if k not in source and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in source if k not in target]
    mismatched = {
        k: (tuple(source[k].shape), tuple(target[k].shape))
        for k in target if k in source and source[k].shape != target[k].shape
    }
    if strict and (missing or unexpected or mismatched):
        raise IncompatibleCheckpointError(filename, missing, unexpected, mismatched)
    return checkpoint
