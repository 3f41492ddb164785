"""Local checkpoint loading that works with torch >= 2.6.

torch 2.6 made ``torch.load`` default to ``weights_only=True``, which rejects the numpy scalars
and ``HistoryBuffer`` objects that mmengine 0.10.x stores in its own checkpoints, so ``resume``
fails. Replacing mmengine's loader for local paths restores the behaviour mmengine was written
for; ``load_from``, ``resume`` and ``init_cfg=dict(type='Pretrained')`` all go through it.
"""
import os.path as osp
from typing import Optional, Union

import torch
from mmengine.runner.checkpoint import CheckpointLoader


@CheckpointLoader.register_scheme(prefixes='', force=True)
def load_from_local(filename: str,
                    map_location: Optional[Union[str, torch.device]] = None
                    ) -> dict:
    """Load a local checkpoint written by mmengine (or by plain ``torch.save``).

    Args:
        filename (str): Local path, optionally prefixed with ``file://``.
        map_location (str | torch.device, optional): Same as :func:`torch.load`.

    Returns:
        dict: The loaded checkpoint.
    """
    filename = osp.expanduser(filename.removeprefix('file://'))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    # Full unpickling is needed for mmengine's own objects; only load files you trust.
    return torch.load(filename, map_location=map_location, weights_only=False)
