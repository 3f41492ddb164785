"""Safe local checkpoint loading for mmengine 0.10 checkpoints.

mmengine 0.10 calls ``torch.load`` with torch's default, which unpickles arbitrary objects on
torch < 2.6 (a crafted file runs code) and rejects mmengine's own checkpoints on torch >= 2.6
(their message hub holds numpy scalars and arrays inside ``HistoryBuffer`` objects). The loader
registered here for local paths, which ``load_from``, ``resume`` and
``init_cfg=dict(type='Pretrained')`` use, always loads with ``weights_only=True`` and allows
exactly the extra types that mmengine, mmseg and mmpretrain checkpoints contain
(:data:`CHECKPOINT_SAFE_GLOBALS`; torch < 2.6 cannot allowlist them, so there only tensors and
plain containers load). A file holding anything else is refused; for a trusted legacy file set
the environment variable ``MDEQ_MM_TRUST_CHECKPOINTS=1`` to unpickle it fully. A file torch
cannot read at all (an interrupted save or download) raises :class:`UnreadableCheckpointError`,
one line with the path and the file's size.
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
# What torch puts before the weights-only unpickler's own reason
WEIGHTS_UNPICKLER_PREFIX = 'WeightsUnpickler error:'
# Words of the weights-only unpickler's refusals (a global, a class or a call it does not allow)
REFUSAL_WORDS = ('GLOBAL', 'allowlist', 'unrecognized function', 'persistent', 'must be imported')


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


class UnreadableCheckpointError(RuntimeError):
    """A checkpoint file that torch cannot read: truncated (an interrupted save or download)
    or otherwise corrupt. The message is one line naming the path, its size and torch's reason.

    Args:
        filename (str): The file.
        reason (BaseException): What torch raised.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), 'cut.pth')
        >>> with open(path, 'wb') as file:
        ...     _ = file.write(b'PK')
        >>> print(UnreadableCheckpointError(path, EOFError()))  # doctest: +ELLIPSIS
        /.../cut.pth (2 bytes) is truncated or corrupt, torch cannot read it (EOFError); ...
    """

    def __init__(self, filename: str, reason: BaseException) -> None:
        size = osp.getsize(filename)
        text = first_sentence(str(reason))
        cause = f'{type(reason).__name__}: {text}' if text else type(reason).__name__
        self.filename, self.size = filename, size
        super().__init__(f'{filename} ({size:,} bytes{", empty" if size == 0 else ""}) is '
                         f'truncated or corrupt, torch cannot read it ({cause}); save or '
                         'download it again')


def first_sentence(message: str) -> str:
    """The first sentence of torch's reason in a ``torch.load`` error message, on one line.

    torch wraps the unpickler's reason in advice on ``weights_only`` and the others go on with
    advice over several lines.

    Example:
        >>> first_sentence('Weights only load failed. Advice.\\n WeightsUnpickler error: '
        ...                'Unsupported global: GLOBAL io.open was not allowed. Use ...')
        'Unsupported global: GLOBAL io.open was not allowed'
    """
    text = ' '.join(message.split(WEIGHTS_UNPICKLER_PREFIX)[-1].split())
    return text.split('. ')[0].rstrip('.')


def is_unreadable_file_error(err: BaseException) -> bool:
    """Whether ``torch.load`` raised ``err`` because the file's bytes are broken, rather than
    for what the file holds (a refused global) or for lack of memory.

    Args:
        err (BaseException): Raised by ``torch.load``.

    Returns:
        bool: True for errors a truncated or corrupt file causes.
    """
    if isinstance(err, (MemoryError, torch.cuda.OutOfMemoryError, ImportError, AttributeError)):
        return False  # no memory, or a trusted file naming a class that is not importable here
    if isinstance(err, pickle.UnpicklingError):
        # the weights-only unpickler refuses objects with these words; anything else it (or
        # pickle) raises means bytes that are no pickle opcodes
        return not any(word in str(err) for word in REFUSAL_WORDS)
    return isinstance(err, Exception)


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
        UnreadableCheckpointError: torch cannot read the file (truncated or corrupt).
        pickle.UnpicklingError: The file holds other objects, which could run code while
            loading; the message says how to opt in for a trusted file.
    """
    filename = osp.expanduser(filename.removeprefix('file://'))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    trusted = checkpoints_are_trusted()
    allow = (torch.serialization.safe_globals(CHECKPOINT_SAFE_GLOBALS)
             if NAMED_SAFE_GLOBALS and not trusted else contextlib.nullcontext())
    try:
        with allow:
            return torch.load(filename, map_location=map_location, weights_only=not trusted)
    except Exception as err:  # noqa: B902  (sorted below: broken bytes or refused objects)
        if is_unreadable_file_error(err):
            # torch's own frames say nothing more than the reason the message keeps
            raise UnreadableCheckpointError(filename, err) from None
        if trusted or not isinstance(err, pickle.UnpicklingError):
            raise
        allowed = 'tensors, plain containers and the types of mmengine checkpoints'
        if not NAMED_SAFE_GLOBALS:
            allowed = (f'tensors and plain containers (torch {torch.__version__} cannot allowlist '
                       'the numpy and HistoryBuffer objects of mmengine checkpoints; torch >= 2.6 '
                       'can)')
        raise pickle.UnpicklingError(
            f'{filename} holds objects other than {allowed}, and unpickling them could run code '
            f'from the file ({first_sentence(str(err))}). If you trust the file, set '
            f'{TRUST_ENV}=1 to load it fully.') from err
