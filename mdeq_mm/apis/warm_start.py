"""Video inference that starts each frame's equilibrium solve from the previous frame's."""
from contextlib import contextmanager
from typing import Any, Dict, Hashable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from mdeq_mm.models import MDEQ


class _StreamState(NamedTuple):
    size: Tuple[int, int]
    state: Tuple[Tensor, ...]


class VideoWarmStart:
    """Keeps one equilibrium per video stream and starts the stream's next solve from it.

    Consecutive frames have nearly the same fixed point, so a solve started from the previous
    frame's ``z*`` reaches the tolerance in fewer evaluations of f than one started from zeros.
    Run each batch of frames inside :meth:`next_frames`, naming the stream of every image; the
    MDEQ backbone's forward then starts each image from its stream's state (zeros for a stream
    without one) and its ``z*`` becomes the stream's new state. A stream starts cold again after
    :meth:`reset`, when its frame size changes, and on a scene cut: the backbone restarts an
    image from zeros when its warm start is no better than a cold start (see
    :meth:`MDEQ.forward`). An image whose features failed (:attr:`MDEQ.last_failed`) leaves its
    stream without a state. Streams absent from a batch keep their state.

    Works through any model that calls its MDEQ backbone once per batch, e.g. an mmseg
    segmentor with ``test_cfg=dict(mode='whole')`` under :func:`mmseg.apis.inference_model`
    (sliding-window or test-time-augmented inference calls it several times and is refused).

    Args:
        model (nn.Module): An :class:`MDEQ` or a model whose ``backbone`` is one, in eval mode.

    Example:
        >>> import torch
        >>> from mdeq_mm.apis import VideoWarmStart
        >>> from mdeq_mm.models import MDEQ
        >>> model = MDEQ(arch=dict(num_channels=(8, 16), expansion=2),
        ...              forward_solver=dict(type='broyden', max_iter=8, tol=0.9)).eval()
        >>> warm_start = VideoWarmStart(model)
        >>> frame = torch.rand(2, 3, 32, 32)
        >>> with torch.no_grad(), warm_start.next_frames(['cam0', 'cam1']):
        ...     _ = model(frame)
        >>> warm_start.streams
        ('cam0', 'cam1')
        >>> with torch.no_grad(), warm_start.next_frames(['cam1', 'cam0']):
        ...     _ = model(frame)
        >>> warm_start.last_f_evals.shape
        torch.Size([2])
    """

    def __init__(self, model: nn.Module) -> None:
        backbone = model if isinstance(model, MDEQ) else getattr(model, 'backbone', None)
        if not isinstance(backbone, MDEQ):
            raise ValueError('VideoWarmStart needs an MDEQ or a model with an MDEQ backbone, '
                             f'got {type(model).__name__} with backbone '
                             f'{type(backbone).__name__}')
        self.backbone = backbone
        self._states: Dict[Hashable, _StreamState] = {}
        self.last_f_evals: Optional[Tensor] = None
        self.last_cold_restart: Optional[Tensor] = None

    @property
    def streams(self) -> Tuple[Hashable, ...]:
        """The streams that hold a state, in the order they got it."""
        return tuple(self._states)

    def state(self, stream: Hashable) -> Optional[Tuple[Tensor, ...]]:
        """The stream's state (one ``(1, C_i, H_i, W_i)`` tensor per branch), or None."""
        entry = self._states.get(stream)
        return None if entry is None else entry.state

    def reset(self, stream: Optional[Hashable] = None) -> None:
        """Forget the state of ``stream`` (of every stream if None): its next frame starts
        cold."""
        if stream is None:
            self._states.clear()
        else:
            self._states.pop(stream, None)

    @contextmanager
    def next_frames(self, streams: Sequence[Hashable]) -> Iterator[None]:
        """Warm-start the one backbone forward run inside, whose images are the next frames
        of ``streams`` (one stream per image, in batch order), and keep its ``z*``.

        Args:
            streams (Sequence[Hashable]): The stream of each image of the batch; distinct.

        Raises:
            ValueError: If the backbone is in training mode, ``streams`` repeats a stream, the
                batch has another number of images, or the backbone runs more than once.
        """
        streams = list(streams)
        if self.backbone.training:
            raise ValueError('VideoWarmStart is for evaluation; call model.eval() first')
        if len(set(streams)) != len(streams):
            raise ValueError(f'each image needs its own stream, got {streams!r}')
        sizes: List[Tuple[int, int]] = []

        def start(module: nn.Module, args: Tuple[Any, ...],
                  kwargs: Dict[str, Any]) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
            x = args[0] if args else kwargs['x']
            sizes.append(tuple(x.shape[-2:]))
            if len(sizes) > 1:
                raise ValueError('VideoWarmStart needs one backbone forward per batch of '
                                 f'frames, got call {len(sizes)} (use test_cfg mode="whole" '
                                 'and no test-time augmentation)')
            if len(x) != len(streams):
                raise ValueError(f'the batch has {len(x)} images but {len(streams)} streams '
                                 f'were named: {streams!r}')
            init_state = self._init_state(streams, sizes[0])
            if init_state is not None:
                kwargs = dict(kwargs, init_state=init_state)
            return args, kwargs

        def keep(module: nn.Module, args: Tuple[Any, ...], outs: Tuple[Tensor, ...]) -> None:
            self._keep(streams, sizes[0], outs)

        handles = [
            self.backbone.register_forward_pre_hook(start, with_kwargs=True),
            self.backbone.register_forward_hook(keep)
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _init_state(self, streams: Sequence[Hashable],
                    size: Tuple[int, int]) -> Optional[Tuple[Tensor, ...]]:
        """Per-branch batch of the streams' states (zeros for those without one), or None when
        no stream has a state for frames of ``size``."""
        for stream in streams:
            entry = self._states.get(stream)
            if entry is not None and entry.size != size:
                del self._states[stream]
        known = [self._states[s].state for s in streams if s in self._states]
        if not known:
            return None
        template = known[0]
        per_image = [
            self._states[s].state if s in self._states else tuple(
                torch.zeros_like(z) for z in template) for s in streams
        ]
        return tuple(torch.cat(branch) for branch in zip(*per_image))

    def _keep(self, streams: Sequence[Hashable], size: Tuple[int, int],
              outs: Sequence[Tensor]) -> None:
        """Store each image's ``z*`` as its stream's state, unless its features failed."""
        backbone = self.backbone
        failed = backbone.last_failed
        for i, stream in enumerate(streams):
            if failed is not None and bool(failed[i]):
                self._states.pop(stream, None)
            else:
                self._states[stream] = _StreamState(
                    size, tuple(out[i:i + 1].detach().clone() for out in outs))
        self.last_f_evals = backbone.last_f_evals
        restart = backbone.last_cold_restart
        self.last_cold_restart = (restart if restart is not None else torch.zeros(
            len(streams), dtype=torch.bool, device=outs[0].device))
