"""The check that a model's heads take the channels its MDEQ backbone gives.

An MDEQ swapped into a stock config leaves the heads with the old backbone's ``in_channels``
(HRNet-W18's FCN head: 270). Nothing complains until the first forward, deep in a convolution
(``expected input[1, 480, 16, 32] to have 270 channels``); :func:`check_head_channels` says at
build time which head key to change and to what. It reads only the built modules, so it serves
mmseg segmentors and mmpretrain classifiers alike.
"""
from typing import Iterator, List, Optional, Tuple

from torch import nn

from .backbones import MDEQ
from .necks import MDEQClsNeck

# mmseg decode heads: the config keys that pick and merge the backbone's outputs
SEG_HEADS = ('decode_head', 'auxiliary_head')
# mmpretrain necks that keep the channels of each feature map
CHANNEL_KEEPING_NECKS = ('GlobalAveragePooling', )


class HeadChannelsError(ValueError):
    """A head's ``in_channels`` that differ from what the MDEQ backbone (or neck) gives."""


def _heads(model: nn.Module, key: str) -> Iterator[Tuple[str, nn.Module]]:
    """``model.<key>`` as (config path, module) pairs; a ModuleList gives one per entry."""
    head = getattr(model, key, None)
    if isinstance(head, nn.ModuleList):
        for i, module in enumerate(head):
            yield f'model.{key}[{i}]', module
    elif isinstance(head, nn.Module):
        yield f'model.{key}', head


def _seg_head_problem(name: str, head: nn.Module, channels: Tuple[int, ...]) -> Optional[str]:
    """What is wrong with an mmseg decode head fed by branches of ``channels``, if anything."""
    transform = head.input_transform
    indices = head.in_index if transform is not None else [head.in_index]
    where = f'{name} ({type(head).__name__})'
    bad = [i for i in indices if not -len(channels) <= i < len(channels)]
    if bad:
        return (f'{where} has in_index={head.in_index!r}, but the MDEQ backbone gives '
                f'{len(channels)} branches of {channels} channels: pick indices in '
                f'0..{len(channels) - 1}')
    picked = [channels[i] for i in indices]
    if transform == 'resize_concat':
        if head.in_channels == sum(picked):
            return None
        return (f'{where} takes {head.in_channels} channels, but the MDEQ backbone gives '
                f'{sum(picked)}: its branches have {channels} channels and '
                f"input_transform='resize_concat' concatenates in_index={tuple(indices)!r}, "
                f"{' + '.join(map(str, picked))} = {sum(picked)}. Write "
                f'{name}.in_channels={picked}')
    expected = picked if transform == 'multiple_select' else picked[0]
    wanted = list(head.in_channels) if transform == 'multiple_select' else head.in_channels
    if wanted == expected:
        return None
    return (f'{where} takes in_channels={wanted!r}, but the MDEQ backbone gives {expected!r} '
            f'at in_index={head.in_index!r} (its branches have {channels} channels). Write '
            f'{name}.in_channels={expected!r}')


def _cls_problems(model: nn.Module, channels: Tuple[int, ...]) -> List[str]:
    """What is wrong with an mmpretrain classifier's neck and head, if anything."""
    neck, head = getattr(model, 'neck', None), getattr(model, 'head', None)
    if isinstance(neck, MDEQClsNeck):
        problems = []
        if tuple(neck.in_channels) != channels:
            problems.append(f'model.neck (MDEQClsNeck) takes in_channels={neck.in_channels}, but '
                            f'the MDEQ backbone gives branches of {channels} channels. Write '
                            f'model.neck.in_channels={channels}')
        given, source = neck.final_channels, 'model.neck (MDEQClsNeck) gives final_channels='
    elif neck is None or type(neck).__name__ in CHANNEL_KEEPING_NECKS:
        problems, given = [], channels[-1]
        source = 'the classifier head reads the last MDEQ branch, which has '
    else:
        return []  # a neck whose output channels are not known here
    head_channels = getattr(head, 'in_channels', None)
    if isinstance(head_channels, int) and head_channels != given:
        problems.append(f'model.head ({type(head).__name__}) takes in_channels={head_channels}, '
                        f'but {source}{given}. Write model.head.in_channels={given}')
    return problems


def check_head_channels(model: nn.Module) -> None:
    """Raise unless the heads of ``model`` take the channels of its MDEQ backbone.

    Checked: mmseg decode and auxiliary heads (``in_channels`` against the branches picked by
    ``in_index``, summed for ``input_transform='resize_concat'``), and mmpretrain classifier
    heads (against ``MDEQClsNeck``'s ``final_channels``, or the last branch without a neck or
    with ``GlobalAveragePooling``). Models without an MDEQ ``backbone``, and heads behind a
    neck whose output channels are not known here, pass unchecked.

    Args:
        model (nn.Module): A built data model (not wrapped), e.g. ``runner.model``.

    Raises:
        HeadChannelsError: Every mismatch found, one per line, each naming the config key
            to change and the value to write.

    Example:
        >>> from mmseg.models.decode_heads import FCNHead
        >>> model = nn.Module()
        >>> model.backbone = MDEQ(arch=dict(num_channels=(8, 16), expansion=2))
        >>> model.decode_head = FCNHead(in_channels=[18, 36], in_index=(0, 1), channels=8,
        ...                             input_transform='resize_concat', num_classes=3)
        >>> check_head_channels(model)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        mdeq_mm.models.head_channels.HeadChannelsError: model.decode_head (FCNHead) takes 54 \
channels, but the MDEQ backbone gives 24: ... Write model.decode_head.in_channels=[8, 16]
    """
    backbone = getattr(model, 'backbone', None)
    if not isinstance(backbone, MDEQ):
        return
    channels = tuple(backbone.num_channels)
    problems: List[str] = []
    seg_heads = [pair for key in SEG_HEADS for pair in _heads(model, key)]
    if seg_heads:
        if getattr(model, 'neck', None) is None:
            problems = [problem for name, head in seg_heads
                        if hasattr(head, 'input_transform')
                        and (problem := _seg_head_problem(name, head, channels))]
    else:
        problems = _cls_problems(model, channels)
    if problems:
        raise HeadChannelsError('\n'.join(problems))
