"""Safe local checkpoint loading for mmengine 0.10 checkpoints.

mmengine 0.10 calls ``torch.load`` with torch's default, which unpickles arbitrary objects on
torch < 2.6 (a crafted file runs code) and rejects mmengine's own checkpoints on torch >= 2.6
(their message hub holds numpy scalars and arrays inside ``HistoryBuffer`` objects). The loader
registered here for local paths, which ``load_from``, ``resume`` and
``init_cfg=dict(type='Pretrained')`` use, always loads with ``weights_only=True`` and allows
exactly the extra types that mmengine, mmseg and mmpretrain checkpoints contain
(:data:`CHECKPOINT_SAFE_GLOBALS`; torch < 2.6 cannot allowlist them, so there only tensors and
plain containers load). A file holding anything else is refused; for a trusted legacy file set
the environment variable ``MDEQ_MM_TRUST_CHECKPOINTS=1`` to unpickle it fully.
"""
import contextlib
import os
import os.path as osp
import pickle
from typing import Any, Callable, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader
from mmengine.utils import digit_version

TRUST_ENV = 'MDEQ_MM_TRUST_CHECKPOINTS'
# The statistics HistoryBuffer registers for itself; a checkpoint refers to them as
# getattr(HistoryBuffer, name).
HISTORY_BUFFER_STATISTICS = ('current', 'max', 'mean', 'min')
# torch >= 2.6 can allowlist an object under the name a file gives it: the (obj, name) form
NAMED_SAFE_GLOBALS = digit_version(torch.__version__) >= digit_version('2.6.0')


def _history_buffer_statistic(owner: Any, name: str) -> Callable:
    """Stand-in for ``getattr`` while loading: resolves only HistoryBuffer's statistics."""
    if owner is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({owner!r}, {name!r}) is not a HistoryBuffer statistic')


def _numpy_globals() -> List[Union[type, Tuple[Callable, str]]]:
    """numpy arrays, scalars and numeric dtypes, under the names numpy 1.x and 2.x use."""
    reconstruct = np.empty(0).__reduce__()[0]
    scalar = np.float64(0).__reduce__()[0]
    numeric = '?' + np.typecodes['AllInteger'] + np.typecodes['AllFloat']
    # numpy >= 1.25 gives each dtype its own class (numpy.dtypes.Float64DType, ...)
    dtype_classes = {type(np.dtype(code)) for code in numeric} - {np.dtype}
    named = [np.ndarray, np.dtype, *sorted(dtype_classes, key=lambda c: c.__name__)]
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        named += [(reconstruct, f'{module}._reconstruct'), (scalar, f'{module}.scalar')]
    return named


#: Globals that mmengine 0.10 / mmseg 1.x / mmpretrain 1.x checkpoints contain beyond
#: tensors and plain containers: the message hub's ``HistoryBuffer`` with its statistics
#: methods, and numpy arrays, scalars and dtypes.
CHECKPOINT_SAFE_GLOBALS = [
    HistoryBuffer,
    (_history_buffer_statistic, 'builtins.getattr'),
    *_numpy_globals(),
]


def checkpoints_are_trusted() -> bool:
    """Whether ``MDEQ_MM_TRUST_CHECKPOINTS=1`` opts in to full unpickling.

    Returns:
        bool: True for ``1``, False when unset, empty or ``0``.

    Raises:
        ValueError: Any other value.
    """
    value = os.environ.get(TRUST_ENV, '')
    if value not in ('', '0', '1'):
        raise ValueError(f'{TRUST_ENV} must be 1 (trust local checkpoints) or 0, got {value!r}')
    return value == '1'


@CheckpointLoader.register_scheme(prefixes='', force=True)
def load_from_local(filename: str,
                    map_location: Optional[Union[str, torch.device]] = None) -> Any:
    """Load a local checkpoint with ``weights_only=True`` plus mmengine's own types.

    Args:
        filename (str): Local path, optionally prefixed with ``file://``.
        map_location (str | torch.device, optional): Same as :func:`torch.load`.

    Returns:
        dict: The loaded checkpoint.

    Raises:
        FileNotFoundError: ``filename`` is not a file.
        pickle.UnpicklingError: The file holds other objects, which could run code while
            loading; the message says how to opt in for a trusted file.
    """
    filename = osp.expanduser(filename.removeprefix('file://'))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    if checkpoints_are_trusted():
        return torch.load(filename, map_location=map_location, weights_only=False)
    allow = (torch.serialization.safe_globals(CHECKPOINT_SAFE_GLOBALS)
             if NAMED_SAFE_GLOBALS else contextlib.nullcontext())
    try:
        with allow:
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch wraps the refused global in advice on weights_only: keep its first sentence
        reason = ' '.join(str(err).split('WeightsUnpickler error:')[-1].split())
        allowed = 'tensors, plain containers and the types of mmengine checkpoints'
        if not NAMED_SAFE_GLOBALS:
            allowed = (f'tensors and plain containers (torch {torch.__version__} cannot allowlist '
                       'the numpy and HistoryBuffer objects of mmengine checkpoints; torch >= 2.6 '
                       'can)')
        raise pickle.UnpicklingError(
            f'{filename} holds objects other than {allowed}, and unpickling them could run code '
            f'from the file ({reason.split(". ")[0].rstrip(".")}). If you trust the file, set '
            f'{TRUST_ENV}=1 to load it fully.') from err
