"""What the tools share: the command-line parser of the analysis tools and demos, the launcher
arguments, config loading and runner building of ``tools/train.py`` and ``tools/test.py``, plus
the test tool's visualization, test-time augmentation, model and checkpoint checks."""
import argparse
import copy
import os
import os.path as osp
import re
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.hooks import Hook
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn

from mdeq_mm.models.head_channels import check_head_channels

from .distributed import init_cpu_process_group

TOOLBOXES = ('mmseg', 'mmpretrain')
LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
# The test tool paints every sample (batch for mmseg) unless told otherwise, as mmpretrain's does.
PAINT_EVERY = 1
# What mmengine's ``Runner.load_checkpoint`` strips from checkpoint keys by default.
WRAPPER_PREFIX = re.compile(r'^module\.')
MAX_LISTED_KEYS = 10
# ``--resume`` without a path: the latest checkpoint of the work_dir
AUTO_RESUME = 'auto'
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


def add_resume_arg(parser: argparse.ArgumentParser) -> None:
    """Add mmpretrain's ``--resume [CHECKPOINT]``: with a path, resume from that checkpoint;
    alone, resume from the latest checkpoint of the work_dir (mmseg's ``--resume``)."""
    parser.add_argument(
        '--resume',
        nargs='?',
        const=AUTO_RESUME,
        metavar='CHECKPOINT',
        help='resume from CHECKPOINT, or without a path from the latest checkpoint in the '
        'work_dir')


def set_resume(cfg: Config, resume: Optional[str]) -> None:
    """Apply ``--resume`` to ``cfg`` as mmpretrain's train tool does.

    Args:
        cfg (Config): The training config; changed in place.
        resume (str, optional): None (start afresh, the config's ``load_from`` kept),
            ``'auto'`` (the latest checkpoint of the work_dir) or a checkpoint path.

    Example:
        >>> cfg = Config(dict(load_from='pretrained.pth'))
        >>> set_resume(cfg, 'work_dirs/x/iter_4000.pth')
        >>> cfg.resume, cfg.load_from
        (True, 'work_dirs/x/iter_4000.pth')
        >>> set_resume(cfg, 'auto')
        >>> cfg.resume, cfg.load_from
        (True, None)
    """
    if resume is None:
        cfg.resume = False
        return
    cfg.resume = True
    cfg.load_from = None if resume == AUTO_RESUME else resume
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
    The built model is checked by :func:`check_model` (heads against the MDEQ's channels).

    Raises:
        HeadChannelsError: A head takes other channels than the MDEQ backbone gives.
    """
    notes = adapt_to_cpu_processes(cfg)
    if cfg.get('launcher', 'none') == 'pytorch':
        init_cpu_process_group()
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    for note in notes:
        runner.logger.info(note)
    check_model(runner)
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

    Every test sample is painted unless ``interval`` is given (the hooks' own default, 50 in
    mmseg, would paint nothing on a test set of fewer batches). mmseg (``SegVisualizationHook``):
    ``show_dir`` becomes the visualizer's ``save_dir``, so the painted images land in
    ``show_dir/vis_data/vis_image``; the interval counts batches. mmpretrain
    (``VisualizationHook``): the hook writes ``show_dir/<image name>_0.png`` itself; the interval
    counts samples.

    Args:
        cfg (Config): A test config with ``default_hooks.visualization``; changed in place.
        show (bool): Display each painted image in a window. Defaults to False.
        show_dir (str, optional): Where to save the painted images. Defaults to None.
        wait_time (float): Seconds each window is shown. Defaults to 2.0.
        interval (int, optional): Paint every ``interval``-th sample (mmseg: batch).
            Defaults to every one.
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
        hook.interval = PAINT_EVERY if interval is None else interval
    else:
        hook.update(enable=True, show=show, wait_time=wait_time, out_dir=show_dir,
                    interval=PAINT_EVERY if interval is None else interval)


def warn_if_nothing_painted(runner: Runner, interval: Optional[int]) -> None:
    """Warn when ``interval`` (``--interval``) exceeds the test set, so nothing would be
    painted: batches for mmseg configs, samples for mmpretrain configs, as the hooks count."""
    if interval is None:
        return
    loader = runner.test_dataloader
    count, unit = ((len(loader), 'batches') if toolbox_of(runner.cfg) == 'mmseg' else
                   (len(loader.dataset), 'samples'))
    if interval > count:
        runner.logger.warning(f'--interval {interval} paints nothing: the test set has {count} '
                              f'{unit}')


def enable_tta(cfg: Config) -> None:
    """Test with the config's ``tta_pipeline`` and wrap the model in its ``tta_model``.

    As in the toolboxes' ``tools/test.py``: mmseg configs must define both (mmseg's Cityscapes
    and runtime base configs do); mmpretrain configs default to flip TTA whose class scores
    are averaged (``AverageClsScoreTTA``).

    mmpretrain's ``VisualizationHook`` cannot paint a TTA batch (it paints
    ``data_batch['inputs']``, which then holds one batch per augmentation), so a config whose
    hook is enabled (e.g. by ``--show-dir``) is refused before anything runs.

    Args:
        cfg (Config): A test config; changed in place.

    Raises:
        ValueError: A config without ``tta_model`` / ``tta_pipeline`` (mmseg), or an
            mmpretrain config with its visualization hook enabled.
    """
    if toolbox_of(cfg) == 'mmpretrain':
        hook = cfg.get('default_hooks', {}).get('visualization') or {}
        if hook.get('enable', False):
            raise ValueError(
                "--tta cannot be combined with --show / --show-dir (or an enabled "
                "VisualizationHook) for mmpretrain configs: mmpretrain's VisualizationHook "
                "paints data_batch['inputs'], which under TTA holds one batch per augmentation "
                "instead of images; paint the predictions without --tta, or test with --tta "
                "without painting")
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


def data_model(runner: Runner) -> nn.Module:
    """The runner's model inside its wrappers (DDP) and TTA model."""
    model = runner.model
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def check_model(runner: Runner) -> None:
    """Check the runner's model before it runs: its heads must take the channels its MDEQ
    backbone gives (:func:`~mdeq_mm.models.head_channels.check_head_channels`).

    Raises:
        HeadChannelsError: Each head whose ``in_channels`` differ, with the value to write.
    """
    check_head_channels(data_model(runner))


def checkpoint_fit(model: nn.Module, state_dict: Dict[str, torch.Tensor]
                   ) -> Tuple[List[str], List[str], Dict[str, tuple]]:
    """How ``state_dict`` fits ``model``: its missing, unexpected and mis-shaped keys.

    Args:
        model (nn.Module): The data model (not wrapped).
        state_dict (dict): Checkpoint weights with the wrapper prefix stripped.

    Returns:
        tuple: Model keys the checkpoint lacks (BN ``num_batches_tracked`` aside), checkpoint
        keys the model lacks, and key -> (checkpoint shape, model shape) where they differ.

    Example:
        >>> from torch import nn
        >>> checkpoint_fit(nn.Linear(2, 3), {'weight': torch.zeros(3, 4), 'extra': torch.ones(1)})
        (['bias'], ['extra'], {'weight': ((3, 4), (3, 2))})
    """
    target = model.state_dict()
    missing = [k for k in target if k not in state_dict and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in state_dict if k not in target]
    mismatched = {
        k: (tuple(state_dict[k].shape), tuple(target[k].shape))
        for k in target if k in state_dict and state_dict[k].shape != target[k].shape
    }
    return missing, unexpected, mismatched


def load_checkpoint(runner: Runner, filename: str, strict: bool = True) -> dict:
    """Load ``filename`` into the runner's model after checking that it fits.

    Keys and shapes are compared before anything is loaded, so a checkpoint of another model
    gives one summary (:class:`IncompatibleCheckpointError`) instead of mmengine's line per
    key. Then, as ``Runner.load_checkpoint`` does, ``after_load_checkpoint`` hooks (such as
    EMA) see the checkpoint and the weights that fit are loaded. Like the runner's own loading
    it belongs after the ``before_run`` hooks (EMA builds its averaged model there): see
    :func:`load_checkpoint_before_run`.

    Args:
        runner (Runner): The runner whose model receives the weights.
        filename (str): Checkpoint path or URL.
        strict (bool): Raise :class:`IncompatibleCheckpointError` when a model key is missing
            (BN ``num_batches_tracked`` aside), a checkpoint key is unexpected or a shape
            differs; otherwise log the summary as a warning and load the keys that fit.
            Defaults to True.

    Returns:
        dict: The loaded checkpoint.

    Raises:
        IncompatibleCheckpointError: With ``strict``, a checkpoint that does not fit.
        UnreadableCheckpointError: A local file torch cannot read (truncated or corrupt).
    """
    checkpoint = CheckpointLoader.load_checkpoint(filename, map_location='cpu')
    model = data_model(runner)

    def weights():
        return OrderedDict((WRAPPER_PREFIX.sub('', key), value)
                           for key, value in checkpoint.get('state_dict', checkpoint).items())

    missing, unexpected, mismatched = checkpoint_fit(model, weights())
    if missing or unexpected or mismatched:
        error = IncompatibleCheckpointError(filename, missing, unexpected, mismatched)
        if strict:
            raise error
        runner.logger.warning(f'{error}; loading the keys that fit')
    # the hooks may change the state dict (EMAHook swaps the averaged weights out of it)
    runner.call_hook('after_load_checkpoint', checkpoint=checkpoint)
    metadata = getattr(checkpoint.get('state_dict', checkpoint), '_metadata', None)
    fitting = OrderedDict(
        (key, value) for key, value in weights().items() if key not in mismatched)
    if metadata is not None:  # BN layers read their version from it
        fitting._metadata = OrderedDict(
            (WRAPPER_PREFIX.sub('', key), value) for key, value in metadata.items())
    model.load_state_dict(fitting, strict=False)
    runner.logger.info(f'Load checkpoint from {filename}')
    return checkpoint


class _LoadCheckpointHook(Hook):
    """Runs :func:`load_checkpoint` as the last ``before_run`` hook."""

    def __init__(self, filename: str, strict: bool) -> None:
        self.filename, self.strict = filename, strict

    def before_run(self, runner: Runner) -> None:
        load_checkpoint(runner, self.filename, self.strict)


def load_checkpoint_before_run(runner: Runner, filename: str, strict: bool = True) -> None:
    """Have the runner :func:`load_checkpoint` when it starts, where it loads ``load_from``.

    mmengine loads ``load_from`` after every ``before_run`` hook, because hooks such as
    EMAHook build what their ``after_load_checkpoint`` fills there; this loads at the same
    point (a hook of the lowest priority), with :func:`load_checkpoint`'s checks. Leave the
    config's ``load_from`` unset so that the runner does not load the file again. The errors of
    :func:`load_checkpoint` come out of the runner's ``test()`` / ``val()`` / ``train()``.

    Args:
        runner (Runner): The runner, not started yet.
        filename (str): Checkpoint path or URL.
        strict (bool): As in :func:`load_checkpoint`. Defaults to True.
    """
    runner.register_hook(_LoadCheckpointHook(filename, strict), priority='LOWEST')
