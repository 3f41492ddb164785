"""Convert an official MDEQ checkpoint (locuslab/mdeq or locuslab/deq) to mdeq_mm.

Writes an mmengine checkpoint (``{'meta': ..., 'state_dict': ...}``) for an mmpretrain
``ImageClassifier`` (``--task cls``), an mmseg ``EncoderDecoder`` with ``FCNHead``
(``--task seg``) or the backbone alone (``--task backbone``). With ``--check CONFIG`` the model
of that config is built and the result loaded into it with ``strict=True`` before anything is
written; the backbone ``arch`` is then taken from the config unless ``--arch`` is given.
For the authors' ImageNet and Cityscapes models it prints the shipped config to test the result
with (``configs/mdeq/*_official_*.py``).

Example::

    python tools/model_converters/convert_mdeq_checkpoint.py MDEQ_Small_Cls.pkl mdeq-small_in1k.pth \\
        --task cls --arch small --check CONFIG
"""
import argparse
import json
import os.path as osp
import pickle
from collections import OrderedDict
from typing import Mapping, Optional, Sequence, Union

import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

import mdeq_mm
from mdeq_mm.engine.checkpoint import UnreadableCheckpointError, is_unreadable_file_error
from mdeq_mm.models.backbones import MDEQ
from mdeq_mm.models.official_checkpoint import (TASKS, OfficialLayout,
                                                convert_official_checkpoint,
                                                describe_official_checkpoint)

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO_ROOT, 'configs', 'mdeq')
# The authors' models: ImageNet classifiers and Cityscapes segmenters (task, classes), and
# (task, arch) -> the config that evaluates the converted checkpoint with their test settings.
OFFICIAL_CLASSES = (('cls', 1000), ('seg', 19))
OFFICIAL_CONFIGS = {
    ('cls', 'small'): 'mdeq-small_official_in1k.py',
    ('cls', 'large'): 'mdeq-large_official_in1k.py',
    ('cls', 'xl'): 'mdeq-xl_official_in1k.py',
    ('seg', 'small'): 'fcn_mdeq-small_official_cityscapes-512x1024.py',
    ('seg', 'large'): 'fcn_mdeq-large_official_cityscapes-512x1024.py',
    ('seg', 'xl'): 'fcn_mdeq-xl_official_cityscapes-768x1024.py',
}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert an official MDEQ checkpoint to mdeq_mm (mmengine) format')
    parser.add_argument('src', help='official checkpoint (.pkl / .pth)')
    parser.add_argument('dst', help='output checkpoint path')
    parser.add_argument('--task', choices=TASKS, required=True,
                        help="target model: 'cls' (mmpretrain ImageClassifier), 'seg' "
                        "(mmseg EncoderDecoder + FCNHead) or 'backbone' (drop the head)")
    parser.add_argument('--arch', choices=sorted(MDEQ.arch_settings),
                        help='backbone preset the checkpoint must match; its post_gn_affine '
                        'decides whether an affine-free post-fusion GroupNorm gets weight=1, '
                        'bias=0 (default: the --check config\'s arch, else follow the '
                        'checkpoint)')
    parser.add_argument('--check', metavar='CONFIG',
                        help='build the model of this mmseg / mmpretrain config and load the '
                        'result with strict=True before saving')
    parser.add_argument('--trust-pickle', action='store_true',
                        help='allow arbitrary pickled objects in src (only for files you '
                        'trust); by default only tensors and plain containers are loaded')
    return parser.parse_args(argv)


def load_official(path: str, trust_pickle: bool = False) -> dict:
    """Load a checkpoint on the CPU, refusing arbitrary pickles unless trusted; a truncated or
    corrupt file stops the tool with one line naming it and its size."""
    try:
        return torch.load(path, map_location='cpu', weights_only=not trust_pickle)
    except Exception as err:  # noqa: B902  (sorted below: broken bytes or refused objects)
        if is_unreadable_file_error(err):
            raise SystemExit(str(UnreadableCheckpointError(path, err))) from None
        if not isinstance(err, pickle.UnpicklingError):
            raise
        raise RuntimeError(f'{path} holds objects other than tensors and plain containers; '
                           f'if you trust the file, rerun with --trust-pickle') from err


def check_converted_checkpoint(state_dict: Mapping[str, torch.Tensor],
                               cfg: Union[str, dict, Config]) -> 'OrderedDict[str, int]':
    """Build ``cfg.model`` and load ``state_dict`` into it with ``strict=True``.

    Args:
        state_dict (Mapping[str, Tensor]): A converted state dict.
        cfg (str | dict | Config): A config (or its path) with ``model`` and ``default_scope``
            ('mmseg' or 'mmpretrain').

    Returns:
        OrderedDict[str, int]: Parameter counts of the model's parts that have parameters
        (e.g. backbone, neck, head) and the total.
    """
    if isinstance(cfg, str):
        cfg = Config.fromfile(cfg)
    scope = cfg.get('default_scope')
    if scope is None:
        raise ValueError("the config needs a default_scope ('mmseg' or 'mmpretrain') to build "
                         'its model')
    init_default_scope(scope)
    model = MODELS.build(cfg['model'])
    model.load_state_dict(state_dict, strict=True)
    counts = OrderedDict()
    for name, child in model.named_children():
        num = sum(p.numel() for p in child.parameters())
        if num:
            counts[name] = num
    counts['total'] = sum(p.numel() for p in model.parameters())
    return counts


def official_config(task: str, layout: OfficialLayout) -> Optional[str]:
    """The shipped config for these weights converted for ``task``, if they are one of the
    authors' ImageNet / Cityscapes models (matched by classes, channels and expansion)."""
    if (task, layout.num_classes) not in OFFICIAL_CLASSES:
        return None
    for (config_task, arch), name in OFFICIAL_CONFIGS.items():
        preset = MDEQ.arch_settings[arch]
        if (config_task == task and tuple(preset['num_channels']) == layout.num_channels
                and preset['expansion'] == layout.expansion):
            return osp.relpath(osp.join(CONFIG_DIR, name))
    return None


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    checkpoint = load_official(args.src, args.trust_pickle)
    layout = describe_official_checkpoint(checkpoint)
    cfg = Config.fromfile(args.check) if args.check else None
    arch = args.arch
    if arch is None and cfg is not None:
        arch = cfg.model.get('backbone', {}).get('arch')
    state_dict = convert_official_checkpoint(checkpoint, args.task, arch=arch)

    found = layout.backbone_arch()
    print(f'{layout.version} layout, heads {list(layout.heads)}: {len(state_dict)} tensors')
    print(f'backbone arch of these weights: {found}')
    if arch is None and not found['post_gn_affine']:
        print('note: the post-fusion GroupNorms have no affine parameters; build the backbone '
              'with post_gn_affine=False, or pass --arch to fill them with weight=1, bias=0')
    if cfg is not None:
        counts = check_converted_checkpoint(state_dict, cfg)
        print(f'loaded into the model of {osp.basename(args.check)} with strict=True')
        for name, num in counts.items():
            print(f'    {name:<12} {num / 1e6:8.3f} M parameters')

    meta = dict(
        source=osp.basename(args.src),
        source_layout=layout.version,
        task=args.task,
        backbone_arch=dict(found, num_channels=list(found['num_channels'])),
        head_channels=None if layout.head_channels is None else list(layout.head_channels),
        final_channels=layout.final_channels,
        num_classes=layout.num_classes,
        mdeq_mm_version=mdeq_mm.__version__)
    torch.save(dict(meta=meta, state_dict=state_dict), args.dst)
    print(f'saved {args.dst}; meta: {json.dumps(meta)}')
    config = official_config(args.task, layout)
    if config is not None:
        print(f'config for it: {config}\n'
              f'    python tools/test.py {config} {args.dst}')
    elif args.task != 'backbone':
        print('no shipped config matches these weights; test them with a config whose model '
              'loads them strictly (--check CONFIG)')


if __name__ == '__main__':
    main()
