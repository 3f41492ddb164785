"""Peak tensor memory of a block of code, on CPU as on CUDA.

On CUDA, ``torch.cuda.max_memory_allocated`` is the peak. The CPU allocator keeps no
statistics and the resident set mixes in library pages and memory the C allocator holds back,
so on CPU :class:`LiveTensorBytes` counts the bytes of every tensor storage created while it is
active and subtracts them when the storage is freed: its peak plus the bytes of the tensors that
existed before (parameters, buffers, inputs: :func:`tensor_bytes`) is the CPU counterpart of
``max_memory_allocated`` (tensor memory only; allocator slack and library workspaces are not
included). :func:`rss_peak_delta` gives the resident-set growth as a cross-check.
"""
import contextlib
import weakref
from typing import Any, Dict, Iterator, Optional, Sequence

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

MIB = 2**20


class LiveTensorBytes(TorchDispatchMode):
    """Peak bytes held by tensor storages created while the mode is active.

    Every operator output whose storage is new (not a view of, or in-place on, an input) is
    counted once and uncounted when the storage is freed. Storages that existed before entering
    the mode are not counted, so free them first (e.g. ``zero_grad(set_to_none=True)``).

    Args:
        device_type (str): Count storages on this device type only. Defaults to 'cpu'.

    Example:
        >>> with LiveTensorBytes() as tracker:
        ...     x = torch.ones(1024)
        ...     del x
        >>> tracker.peak, tracker.live
        (4096, 0)
    """

    def __init__(self, device_type: str = 'cpu') -> None:
        super().__init__()
        self.device_type = device_type
        self.live = 0
        self.peak = 0
        self._counted = WeakIdKeyDictionary()

    def _release(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = {_storage_ptr(t) for t in tree_flatten((args, kwargs))[0]}
        out = func(*args, **kwargs)
        for t in tree_flatten(out)[0]:
            if (not isinstance(t, Tensor) or t.device.type != self.device_type
                    or _storage_ptr(t) is None):
                continue
            storage = t.untyped_storage()
            nbytes = storage.nbytes()
            if nbytes == 0 or storage.data_ptr() in inputs or storage in self._counted:
                continue
            self._counted[storage] = nbytes
            weakref.finalize(storage, self._release, nbytes)
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        return out


def _storage_ptr(t: Any) -> Optional[int]:
    """Address of a tensor's storage; None for non-tensors and storage-less (e.g. mkldnn)."""
    if not isinstance(t, Tensor) or t.layout != torch.strided:
        return None
    return t.untyped_storage().data_ptr()


def tensor_bytes(tensors: Sequence[Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors``.

    Example:
        >>> x = torch.zeros(256)
        >>> tensor_bytes([x, x[:10], torch.zeros(4, dtype=torch.float64)])
        1056
    """
    storages = {}
    for t in tensors:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


@contextlib.contextmanager
def peak_tensor_bytes(device: torch.device) -> Iterator[Dict[str, int]]:
    """Measure the peak bytes of tensors created inside the block on ``device``.

    Yields a dict whose ``'peak'`` is filled in when the block ends: ``max_memory_allocated``
    on CUDA (which includes what existed before), :class:`LiveTensorBytes` elsewhere (which
    does not: add :func:`tensor_bytes` of what existed before).
    """
    result = {'peak': 0}
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        yield result
        torch.cuda.synchronize(device)
        result['peak'] = torch.cuda.max_memory_allocated(device)
        return
    with LiveTensorBytes(device.type) as tracker:
        yield result
    result['peak'] = tracker.peak


def _proc_status_kib(field: str) -> Optional[int]:
    """A ``kB`` field of ``/proc/self/status`` (Linux), or None."""
    try:
        with open('/proc/self/status', encoding='ascii') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@contextlib.contextmanager
def rss_peak_delta() -> Iterator[Dict[str, Optional[int]]]:
    """Resident-set growth (bytes) of the block: peak RSS inside minus RSS before (Linux).

    Yields a dict whose ``'bytes'`` is filled in when the block ends, or stays None where the
    kernel's peak mark cannot be reset.
    """
    result: Dict[str, Optional[int]] = {'bytes': None}
    before = _proc_status_kib('VmRSS')
    try:
        with open('/proc/self/clear_refs', 'w', encoding='ascii') as f:
            f.write('5')  # resets the peak mark (VmHWM) to the current RSS
        reset = True
    except OSError:
        reset = False
    yield result
    peak = _proc_status_kib('VmHWM')
    if reset and before is not None and peak is not None:
        result['bytes'] = max(peak - before, 0) * 1024
