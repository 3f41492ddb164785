"""Convert the authors' pretrained MDEQ checkpoints to this package's layout.

The authors published ImageNet and Cityscapes checkpoints for their code in
locuslab/mdeq ("v1") and locuslab/deq ``MDEQ-Vision`` ("v2"). Both name the
parts of the model the same way::

    downsample.{0,1,3,4}          stem: conv3x3, BN, ReLU, conv3x3, BN
    stage0.{0,1}                  injection: conv1x1, BN (v2: absent for the
                                  2-branch CIFAR models without downsampling)
    fullstage.*                   the layer f, with our MDEQModule's names
    incre_modules / downsamp_modules / final_layer / classifier
                                  classification head (bottleneck BNs have
                                  no affine parameters)
    last_layer.{0,1,3}            segmentation head: conv1x1 with bias, BN,
                                  final conv

Both weight-normalize the block convs and the post-fusion conv1x1 with their
own ``WeightNorm`` (``weight_g`` of shape (out, 1, 1, 1) and ``weight_v``,
like ours). They differ in what else the state dict holds:

* v1 keeps a gradient-free copy of f made before weight normalization
  (``fullstage_copy.*``, plain ``weight`` tensors refreshed at every forward)
  and registers its solver wrapper as a submodule holding both, so the state
  dict repeats them as ``deq.func.*`` and ``deq.func_copy.*``.
* v2 has neither, but may drop the GroupNorm affine parameters
  (``BLOCK_GN_AFFINE``, ``FUSE_GN_AFFINE``, ``POST_GN_AFFINE``; the CIFAR
  configs set ``POST_GN_AFFINE: false``), may use 5x5 block convs
  (``BIG_KERNELS``) and extra stem stages (``DOWNSAMPLE_TIMES > 2``); the last
  two have no counterpart here and are rejected.

The published checkpoint files (the same files for both versions) are in the
v1 layout; the segmentation ones were saved from a training wrapper, so their
keys start with ``model.`` next to the criterion's ``loss.*`` class weights.

The conversion is a table of module-prefix correspondences built from the
structure found in the checkpoint, plus exact re-parametrizations:

* weight-normalized convs: stored ``weight_g``/``weight_v`` pairs (or
  ``torch.nn.utils.parametrizations`` originals) map as they are; a folded
  ``weight`` becomes ``v = weight, g = ||weight||`` per output channel;
* norms without affine parameters in the source get ``weight = 1, bias = 0``
  (the same function), except the post-fusion GroupNorm when the target has
  ``post_gn_affine=False``;
* the segmentation head's conv bias ``b`` is folded into the next BN:
  ``BN(Wx + b) = BN'(Wx)`` with ``running_mean' = running_mean - b``. This is
  exact in eval mode; in training mode BN subtracts the batch mean, which
  absorbs ``b`` anyway.

Every key of the checkpoint must be consumed and every key of the table
found, otherwise :class:`CheckpointMismatchError` lists the offending keys.
"""
import re
import typing
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .backbones.mdeq import MDEQ
from .layers.weight_norm_conv import channel_norm
from .necks.mdeq_cls_neck import BOTTLENECK_EXPANSION

TASKS = ('cls', 'seg', 'backbone')

# Checkpoint wrappers: mmengine / HRNet-style dicts, DataParallel, and the
# authors' segmentation training wrapper (``model`` + ``loss``).
_WRAPPER_KEYS = ('state_dict', 'model')
_MODEL_PREFIXES = ('module.', 'model.')
_TRAINING_WRAPPER_PREFIX = 'model.'
_LOSS_PREFIX = 'loss.'

_F = 'fullstage.'
_F_COPY = 'fullstage_copy.'
# v1's solver wrapper shares f and its copy: the same tensors, other names.
_F_ALIASES = (('deq.func.', _F), ('deq.func_copy.', _F_COPY))
_BRANCH_RE = re.compile(r'^fullstage\.branches\.(\d+)\.')

_CLS_HEAD_PREFIXES = ('incre_modules.', 'downsamp_modules.', 'final_layer.',
                      'classifier.')
_SEG_HEAD_PREFIXES = ('last_layer.', )

# (magnitude, direction) names of a weight-normalized weight.
_WN_FORMS = (('weight_g', 'weight_v'), ('parametrizations.weight.original0',
                                        'parametrizations.weight.original1'))

_ARCH_KEYS_IN_WEIGHTS = ('num_channels', 'expansion', 'injection_conv')

Arch = Union[str, Mapping]
StateDict = typing.OrderedDict[str, Tensor]


class CheckpointMismatchError(ValueError):
    """The checkpoint does not fit the expected layout; lists every problem.

    Attributes:
        unknown (list[str]): Checkpoint keys that nothing maps.
        missing (list[str]): Keys the layout needs but the checkpoint lacks.
        problems (list[str]): Other inconsistencies (shapes, values).
    """

    def __init__(self,
                 unknown: Sequence[str] = (),
                 missing: Sequence[str] = (),
                 problems: Sequence[str] = (),
                 hint: str = '') -> None:
        self.unknown = sorted(unknown)
        self.missing = sorted(missing)
        self.problems = list(problems)
        sections = [('unknown key(s) in the checkpoint', self.unknown),
                    ('missing key(s)', self.missing),
                    ('problem(s)', self.problems)]
        lines = ['the checkpoint does not match the official MDEQ layout:']
        for title, items in sections:
            if items:
                lines.append(f'{len(items)} {title}:')
                lines.extend(f'    {item}' for item in items)
        if hint:
            lines.append(hint)
        super().__init__('\n'.join(lines))


@dataclass(frozen=True)
class OfficialLayout:
    """What an official checkpoint holds, read from its keys and shapes.

    Args:
        version (str): 'v1' (with copies of f) or 'v2'.
        num_channels (tuple[int]): Channels per branch, finest first.
        expansion (int): Hidden width factor of the residual blocks.
        injection_conv (bool): Whether the injection conv1x1-BN exists.
        post_gn_affine (bool): Whether the post-fusion GroupNorm has
            affine parameters.
        heads (tuple[str]): Heads present: 'cls' and/or 'seg'.
        head_channels (tuple[int], optional): Classification bottleneck
            widths.
        final_channels (int, optional): Classification feature size.
        num_classes (int, optional): Classes of the classifier or segmenter.
    """

    version: str
    num_channels: Tuple[int, ...]
    expansion: int
    injection_conv: bool
    post_gn_affine: bool
    heads: Tuple[str, ...]
    head_channels: Optional[Tuple[int, ...]] = None
    final_channels: Optional[int] = None
    num_classes: Optional[int] = None

    def backbone_arch(self) -> dict:
        """The ``arch`` dict of our ``MDEQ`` backbone for these weights.

        The stem stride and the GroupNorm groups leave no trace in the
        weights: the authors used stride 4 (ImageNet, Cityscapes) or 1
        (CIFAR) and 8 groups.
        """
        return dict(
            num_channels=self.num_channels,
            expansion=self.expansion,
            injection_conv=self.injection_conv,
            post_gn_affine=self.post_gn_affine)


def unwrap_state_dict(checkpoint: Mapping) -> StateDict:
    """Return the bare state dict of an official checkpoint.

    Accepts a raw state dict or one wrapped as ``{'state_dict': ...}`` /
    ``{'model': ...}``; strips the ``module.`` (DataParallel) and ``model.``
    (segmentation training wrapper) prefixes and drops that wrapper's
    ``loss.*`` buffers (the criterion's class weights).
    """
    state = checkpoint
    for key in _WRAPPER_KEYS:
        if isinstance(state.get(key), Mapping):
            state = state[key]
            break
    state = OrderedDict(state)
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise TypeError(f'a state dict holds tensors only; these keys do '
                        f'not: {sorted(bad)}')
    while True:
        inner = _strip_wrapper_prefix(state)
        if inner is None:
            return state
        state = inner


def _strip_wrapper_prefix(state: StateDict) -> Optional[StateDict]:
    """Remove one wrapper level (``module.``, or ``model.`` with its
    ``loss.*`` sibling), or return None if there is none."""
    for prefix in _MODEL_PREFIXES:
        allowed = ((prefix, _LOSS_PREFIX)
                   if prefix == _TRAINING_WRAPPER_PREFIX else (prefix, ))
        if any(k.startswith(prefix) for k in state) and all(
                k.startswith(allowed) for k in state):
            return OrderedDict((k[len(prefix):], v)
                               for k, v in state.items()
                               if k.startswith(prefix))
    return None


def detect_version(state_dict: Mapping[str, Tensor]) -> str:
    """'v1' if the state dict carries v1's copies of f, else 'v2'."""
    copy_prefixes = (_F_COPY, ) + tuple(alias for alias, _ in _F_ALIASES)
    return 'v1' if any(k.startswith(copy_prefixes)
                       for k in state_dict) else 'v2'


def describe_official_checkpoint(checkpoint: Mapping) -> OfficialLayout:
    """Read the architecture of an official checkpoint from its tensors."""
    return _describe(unwrap_state_dict(checkpoint))


def convert_official_checkpoint(checkpoint: Mapping,
                                task: str,
                                arch: Optional[Arch] = None) -> StateDict:
    """Convert an official MDEQ checkpoint to our model's state dict.

    Args:
        checkpoint (Mapping): The loaded checkpoint: a state dict, possibly
            wrapped and prefixed (see :func:`unwrap_state_dict`).
        task (str): 'cls' for an mmpretrain ``ImageClassifier`` (keys
            ``backbone.``, ``neck.``, ``head.``), 'seg' for an mmseg
            ``EncoderDecoder`` with ``FCNHead`` (``backbone.``,
            ``decode_head.``), or 'backbone' for the backbone alone (the head
            of the checkpoint is dropped), e.g. to start Cityscapes training
            from ImageNet weights.
        arch (str | dict, optional): Our backbone's ``arch`` (a preset name
            or dict, as given to ``MDEQ``). The checkpoint must match its
            channels, expansion and injection; its ``post_gn_affine`` decides
            whether an affine-free post-fusion GroupNorm gets ``weight = 1,
            bias = 0``. None follows the checkpoint
            (see :meth:`OfficialLayout.backbone_arch`).

    Returns:
        OrderedDict[str, Tensor]: The converted state dict.

    Raises:
        CheckpointMismatchError: Unknown or missing keys, or inconsistent
            copies of f, all listed.
        ValueError: The checkpoint does not match ``arch``.
    """
    if task not in TASKS:
        raise ValueError(f'task must be one of {TASKS}, got {task!r}')
    state_dict = unwrap_state_dict(checkpoint)
    layout = _describe(state_dict)
    state_dict = _drop_copies_of_f(state_dict)
    target = _resolve_target_arch(layout, arch)
    converter = _Converter(state_dict)
    for entry in _build_table(layout, task, target, state_dict):
        converter.apply(entry)
    if task == 'backbone':
        converter.skip(_CLS_HEAD_PREFIXES + _SEG_HEAD_PREFIXES)
    return converter.finish(_task_hint(task, layout))


@dataclass(frozen=True)
class _Entry:
    """One module correspondence: authors' prefix -> our prefix."""

    kind: str  # 'conv', 'wn_conv', 'bn', 'gn' or 'linear'
    src: str
    dst: str
    kernel: Optional[int] = None  # conv kernel size to check
    bias: bool = False  # conv has a bias
    fold_into: Optional[str] = None  # BN prefix absorbing the conv bias
    channels: int = 0  # GN channels, to fill absent affine parameters
    affine: bool = True  # the target GN has affine parameters


def _conv_shape(state_dict: Mapping[str, Tensor],
                prefix: str) -> Optional[torch.Size]:
    """Weight shape of a (possibly weight-normalized) conv, if stored."""
    names = [v for _, v in _WN_FORMS] + ['weight']
    for name in names:
        if prefix + name in state_dict:
            return state_dict[prefix + name].shape
    return None


def _describe(state_dict: Mapping[str, Tensor]) -> OfficialLayout:
    branches = {
        int(m.group(1))
        for m in map(_BRANCH_RE.match, state_dict) if m
    }
    if not branches:
        sample = sorted(state_dict)[:5]
        raise CheckpointMismatchError(
            missing=[f'{_F}branches.*'],
            hint=f'no MDEQ layer f found: is this an official MDEQ '
            f'checkpoint? First keys: {sample}')
    channels, hidden, missing = [], [], []
    for i in range(max(branches) + 1):
        block = f'{_F}branches.{i}.blocks.0.'
        conv1 = _conv_shape(state_dict, block + 'conv1.')
        conv2 = _conv_shape(state_dict, block + 'conv2.')
        for name, shape in (('conv1.', conv1), ('conv2.', conv2)):
            if shape is None:
                missing.append(block + name + 'weight_v')
        if conv1 is not None and conv2 is not None:
            channels.append(conv2[0])
            hidden.append(conv1[0])
    if missing:
        raise CheckpointMismatchError(missing=missing)
    expansions = {h // c for h, c in zip(hidden, channels)}
    if len(expansions) != 1 or any(h % c for h, c in zip(hidden, channels)):
        raise ValueError(
            f'the residual blocks have hidden widths {hidden} for branch '
            f'channels {channels}: not one integer expansion factor')

    heads = tuple(
        name
        for name, prefixes in (('cls', _CLS_HEAD_PREFIXES),
                               ('seg', _SEG_HEAD_PREFIXES))
        if any(k.startswith(prefixes) for k in state_dict))
    incre = [
        state_dict.get(f'incre_modules.{i}.0.conv1.weight')
        for i in range(len(channels))
    ]
    head_channels = None
    if all(w is not None for w in incre):
        head_channels = tuple(w.shape[0] for w in incre)
    final = state_dict.get('final_layer.0.weight')
    classes = state_dict.get('classifier.weight',
                             state_dict.get('last_layer.3.weight'))
    return OfficialLayout(
        version=detect_version(state_dict),
        num_channels=tuple(channels),
        expansion=expansions.pop(),
        injection_conv=any(k.startswith('stage0.') for k in state_dict),
        post_gn_affine=f'{_F}post_fuse_layers.0.gnorm.weight' in state_dict,
        heads=heads,
        head_channels=head_channels,
        final_channels=None if final is None else final.shape[0],
        num_classes=None if classes is None else classes.shape[0])


def _folded_names(f_state: Mapping[str, Tensor]) -> Dict[str, torch.Size]:
    """f's key -> shape with weight-norm pairs folded into ``weight``.

    This is the layout of v1's copy of f, made before weight normalization.
    """
    shapes = {}
    for name, tensor in f_state.items():
        for g_name, v_name in _WN_FORMS:
            if name.endswith('.' + v_name):
                shapes[name[:-len(v_name)] + 'weight'] = tensor.shape
                break
            if name.endswith('.' + g_name):
                break
        else:
            shapes[name] = tensor.shape
    return shapes


def _sub_state(state_dict: Mapping[str, Tensor],
               prefix: str) -> Dict[str, Tensor]:
    return {
        k[len(prefix):]: v
        for k, v in state_dict.items() if k.startswith(prefix)
    }


def _drop_copies_of_f(state_dict: StateDict) -> StateDict:
    """Check v1's copies of f against ``fullstage.*``, then drop them.

    The aliases of the solver wrapper are the same tensors and must be equal.
    The copy is refreshed from f at every forward, so after the last
    optimizer step it may lag by one update: only its keys and shapes are
    checked.
    """
    f_state = _sub_state(state_dict, _F)
    copy_state = _sub_state(state_dict, _F_COPY)
    unknown, missing, problems = [], [], []
    for alias, original in _F_ALIASES:
        alias_state = _sub_state(state_dict, alias)
        if not alias_state:
            continue
        original_state = _sub_state(state_dict, original)
        unknown += [alias + k for k in alias_state if k not in original_state]
        missing += [alias + k for k in original_state if k not in alias_state]
        problems += [
            f'{alias}{k} differs from {original}{k}'
            for k in alias_state.keys() & original_state.keys()
            if not torch.equal(alias_state[k], original_state[k])
        ]
    if copy_state:
        expected = _folded_names(f_state)
        unknown += [_F_COPY + k for k in copy_state if k not in expected]
        missing += [_F_COPY + k for k in expected if k not in copy_state]
        problems += [
            f'{_F_COPY}{k} has shape {tuple(copy_state[k].shape)} but f '
            f'implies {tuple(expected[k])}'
            for k in copy_state.keys() & expected.keys()
            if copy_state[k].shape != expected[k]
        ]
    if unknown or missing or problems:
        raise CheckpointMismatchError(
            unknown, missing, problems,
            hint='the copies of f (fullstage_copy.*, deq.func*.*) do not '
            'match fullstage.*')
    copy_prefixes = (_F_COPY, ) + tuple(alias for alias, _ in _F_ALIASES)
    return OrderedDict(
        (k, v) for k, v in state_dict.items()
        if not k.startswith(copy_prefixes))


def _resolve_target_arch(layout: OfficialLayout,
                         arch: Optional[Arch]) -> dict:
    """Our backbone arch to convert for, checked against the checkpoint."""
    found = layout.backbone_arch()
    if arch is None:
        return found
    target = MDEQ.resolve_arch(arch)
    target['num_channels'] = tuple(target['num_channels'])
    diffs = [
        f'{key}: checkpoint {found[key]!r}, arch {target[key]!r}'
        for key in _ARCH_KEYS_IN_WEIGHTS if found[key] != target[key]
    ]
    if diffs:
        raise ValueError('the checkpoint does not match the requested '
                         'arch:\n    ' + '\n    '.join(diffs) +
                         f'\nthe checkpoint fits arch={found!r}')
    return target


def _backbone_table(layout: OfficialLayout, target: dict) -> List[_Entry]:
    table = []
    for i in (0, 3):  # conv, BN, ReLU, conv, BN, ReLU
        table += [
            _Entry('conv', f'downsample.{i}.', f'backbone.stem.{i}.', 3),
            _Entry('bn', f'downsample.{i + 1}.', f'backbone.stem.{i + 1}.'),
        ]
    if layout.injection_conv:
        table += [
            _Entry('conv', 'stage0.0.', 'backbone.injection.0.', 1),
            _Entry('bn', 'stage0.1.', 'backbone.injection.1.'),
        ]
    # Our MDEQModule keeps the authors' names below f.
    f_table = []
    channels = layout.num_channels
    for i, c in enumerate(channels):
        block = f'branches.{i}.blocks.0.'
        f_table += [
            _Entry('wn_conv', block + 'conv1.', block + 'conv1.', 3),
            _Entry('gn', block + 'gn1.', block + 'gn1.',
                   channels=layout.expansion * c),
            _Entry('wn_conv', block + 'conv2.', block + 'conv2.', 3),
            _Entry('gn', block + 'gn2.', block + 'gn2.', channels=c),
            _Entry('gn', block + 'gn3.', block + 'gn3.', channels=c),
        ]
        for j, c_j in enumerate(channels):
            fuse = f'fuse_layers.{i}.{j}.net.'
            if j > i:
                f_table += [
                    _Entry('conv', fuse + 'conv.', fuse + 'conv.', 1),
                    _Entry('gn', fuse + 'gnorm.', fuse + 'gnorm.',
                           channels=c),
                ]
            for k in range(i - j):
                stage = f'{fuse}{k}.'
                out = c if k == i - j - 1 else c_j
                f_table += [
                    _Entry('conv', stage + 'conv.', stage + 'conv.', 3),
                    _Entry('gn', stage + 'gnorm.', stage + 'gnorm.',
                           channels=out),
                ]
        post = f'post_fuse_layers.{i}.'
        f_table += [
            _Entry('wn_conv', post + 'conv.', post + 'conv.', 1),
            _Entry('gn', post + 'gnorm.', post + 'gnorm.', channels=c,
                   affine=target['post_gn_affine']),
        ]
    table += [
        _Entry(e.kind, _F + e.src, 'backbone.f.' + e.dst, e.kernel,
               channels=e.channels, affine=e.affine) for e in f_table
    ]
    return table


def _cls_head_table(layout: OfficialLayout,
                    state_dict: Mapping[str, Tensor]) -> List[_Entry]:
    table = []
    for i, c in enumerate(layout.num_channels):
        src, dst = f'incre_modules.{i}.0.', f'neck.incre_modules.{i}.0.'
        for n, kernel in ((1, 1), (2, 3), (3, 1)):
            table += [
                _Entry('conv', f'{src}conv{n}.', f'{dst}conv{n}.', kernel),
                _Entry('bn', f'{src}bn{n}.', f'{dst}bn{n}.'),
            ]
        # Same rule as the authors' and our neck: project the shortcut when
        # the widths differ. Unknown widths: follow the checkpoint.
        conv1 = state_dict.get(f'{src}conv1.weight')
        projects = (
            BOTTLENECK_EXPANSION * conv1.shape[0] != c if conv1 is not None else any(
                k.startswith(f'{src}downsample.') for k in state_dict))
        if projects:
            table += [
                _Entry('conv', f'{src}downsample.0.', f'{dst}downsample.0.',
                       1),
                _Entry('bn', f'{src}downsample.1.', f'{dst}downsample.1.'),
            ]
    for i in range(len(layout.num_channels) - 1):
        src, dst = f'downsamp_modules.{i}.', f'neck.downsamp_modules.{i}.'
        table += [
            _Entry('conv', src + '0.', dst + '0.', 3, bias=True),
            _Entry('bn', src + '1.', dst + '1.'),
        ]
    table += [
        _Entry('conv', 'final_layer.0.', 'neck.final_layer.0.', 1,
               bias=True),
        _Entry('bn', 'final_layer.1.', 'neck.final_layer.1.'),
        _Entry('linear', 'classifier.', 'head.fc.'),
    ]
    return table


def _seg_head_table() -> List[_Entry]:
    bn = 'decode_head.convs.0.bn.'
    return [
        _Entry('conv', 'last_layer.0.', 'decode_head.convs.0.conv.', 1,
               bias=True, fold_into=bn),
        _Entry('bn', 'last_layer.1.', bn),
        _Entry('conv', 'last_layer.3.', 'decode_head.conv_seg.', 1,
               bias=True),
    ]


def _build_table(layout: OfficialLayout, task: str, target: dict,
                 state_dict: Mapping[str, Tensor]) -> List[_Entry]:
    table = _backbone_table(layout, target)
    if task == 'cls':
        table += _cls_head_table(layout, state_dict)
    elif task == 'seg':
        table += _seg_head_table()
    return table


def _task_hint(task: str, layout: OfficialLayout) -> str:
    other = {'cls': 'seg', 'seg': 'cls'}.get(task)
    if other in layout.heads and task not in layout.heads:
        return (f"the checkpoint has a {other} head, not a {task} head: use "
                f"task='{other}' (or 'backbone' for the backbone alone)")
    return ''


class _Converter:
    """Applies table entries, tracking used, missing and bad keys."""

    def __init__(self, state_dict: StateDict) -> None:
        self.state_dict = state_dict
        self.used: set = set()
        self.missing: List[str] = []
        self.problems: List[str] = []
        self.folds: List[Tuple[str, str, Tensor]] = []
        self.out: StateDict = OrderedDict()
        # dtype of the identity affine parameters filled into GroupNorms
        f_dtypes = (v.dtype for k, v in state_dict.items()
                    if k.startswith(_F) and v.is_floating_point())
        self.dtype = next(f_dtypes, torch.float32)

    def apply(self, entry: _Entry) -> None:
        getattr(self, '_' + entry.kind)(entry)

    def skip(self, prefixes: Tuple[str, ...]) -> None:
        self.used.update(k for k in self.state_dict if k.startswith(prefixes))

    def finish(self, hint: str = '') -> StateDict:
        for bias_key, norm, bias in self.folds:
            mean = self.out.get(norm + 'running_mean')
            if mean is None:
                continue
            if mean.shape != bias.shape:
                self.problems.append(
                    f'{bias_key} of shape {tuple(bias.shape)} cannot fold '
                    f'into a BN of {mean.numel()} channels')
                continue
            self.out[norm + 'running_mean'] = mean - bias.to(mean.dtype)
        unknown = set(self.state_dict) - self.used
        if unknown or self.missing or self.problems:
            raise CheckpointMismatchError(unknown, self.missing,
                                          self.problems, hint)
        return self.out

    def _take(self, key: str) -> Optional[Tensor]:
        if key not in self.state_dict:
            self.missing.append(key)
            return None
        self.used.add(key)
        return self.state_dict[key]

    def _take_optional(self, key: str) -> Optional[Tensor]:
        if key in self.state_dict:
            self.used.add(key)
        return self.state_dict.get(key)

    def _take_affine(self, prefix: str) -> Optional[Tuple[Tensor, Tensor]]:
        """Both of ``weight``/``bias``, or None if both are absent."""
        present = [prefix + n in self.state_dict for n in ('weight', 'bias')]
        if not any(present):
            return None
        weight, bias = self._take(prefix + 'weight'), self._take(prefix +
                                                                 'bias')
        return None if weight is None or bias is None else (weight, bias)

    def _check_kernel(self, key: str, weight: Tensor,
                      kernel: Optional[int]) -> None:
        if kernel is not None and tuple(weight.shape[2:]) != (kernel, ) * 2:
            self.problems.append(
                f'{key} has a {"x".join(map(str, weight.shape[2:]))} kernel; '
                f'the target needs {kernel}x{kernel}')

    def _conv(self, e: _Entry) -> None:
        weight = self._take(e.src + 'weight')
        if weight is not None:
            self._check_kernel(e.src + 'weight', weight, e.kernel)
            self.out[e.dst + 'weight'] = weight
        if not e.bias:
            return
        bias = self._take(e.src + 'bias')
        if bias is None:
            return
        if e.fold_into:
            self.folds.append((e.src + 'bias', e.fold_into, bias))
        else:
            self.out[e.dst + 'bias'] = bias

    def _wn_conv(self, e: _Entry) -> None:
        for g_name, v_name in _WN_FORMS:
            if any(e.src + n in self.state_dict for n in (g_name, v_name)):
                g, v = self._take(e.src + g_name), self._take(e.src + v_name)
                break
        else:
            if e.src + 'weight' not in self.state_dict:
                self.missing += [e.src + 'weight_g', e.src + 'weight_v']
                return
            weight = self._take(e.src + 'weight')
            g = channel_norm(weight)
            # A zero filter has no direction; any unit one reproduces it.
            v = torch.where(g == 0, torch.ones_like(weight), weight)
        if g is None or v is None:
            return
        self._check_kernel(e.src + 'weight_v', v, e.kernel)
        if g.numel() != v.shape[0]:
            self.problems.append(
                f'{e.src}: magnitude of shape {tuple(g.shape)} does not '
                f'match {v.shape[0]} output channels')
            return
        self.out[e.dst + 'weight_v'] = v
        self.out[e.dst + 'weight_g'] = g.reshape(v.shape[0], 1, 1, 1)

    def _bn(self, e: _Entry) -> None:
        mean = self._take(e.src + 'running_mean')
        var = self._take(e.src + 'running_var')
        affine = self._take_affine(e.src)
        count = self._take_optional(e.src + 'num_batches_tracked')
        if mean is None or var is None:
            return
        if affine is None:  # affine=False in the source: the identity
            affine = (torch.ones_like(mean), torch.zeros_like(mean))
        self.out[e.dst + 'weight'], self.out[e.dst + 'bias'] = affine
        self.out[e.dst + 'running_mean'] = mean
        self.out[e.dst + 'running_var'] = var
        self.out[e.dst + 'num_batches_tracked'] = (
            count if count is not None else torch.tensor(0))

    def _gn(self, e: _Entry) -> None:
        affine = self._take_affine(e.src)
        if not e.affine:
            if affine is not None:
                self.problems.append(
                    f'{e.src}weight/bias: the checkpoint has learned '
                    f'post-fusion GroupNorm parameters; build the target '
                    f'with post_gn_affine=True')
            return
        if affine is None:  # affine=False in the source: the identity
            affine = (torch.ones(e.channels, dtype=self.dtype),
                      torch.zeros(e.channels, dtype=self.dtype))
        self.out[e.dst + 'weight'], self.out[e.dst + 'bias'] = affine

    def _linear(self, e: _Entry) -> None:
        for name in ('weight', 'bias'):
            tensor = self._take(e.src + name)
            if tensor is not None:
                self.out[e.dst + name] = tensor
