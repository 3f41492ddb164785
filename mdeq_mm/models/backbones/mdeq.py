"""The MDEQ backbone: a multiscale layer solved for its fixed point."""
import warnings
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor

from mdeq_mm.deq import DEQ_MODES, DEQCore, SolverState, SolverStats, StatePacker
from ..layers import MDEQModule
from .solver_stats_reporter import SolverStatsReporter

STEM_STRIDES = (1, 2, 4)
# The first relative residual of a cold start: ||f(0) - 0|| / ||f(0)|| = 1 (up to its eps). A
# warm start whose first residual is not below it is no better than zeros (e.g. a scene cut).
COLD_START_REL_RES = 1.0
# Checkpoint schemes of mmengine's model hubs. They name other backbones' weights (a stock
# config's ``model.pretrained``, e.g. 'open-mmlab://msra/hrnetv2_w18'), which MDEQ cannot load.
HUB_SCHEMES = ('open-mmlab://', 'openmmlab://', 'torchvision://', 'modelzoo://', 'mmcls://')


class FixedPointProblem(NamedTuple):
    """The map an MDEQ solves for one batch of images, and the state its solve starts from.

    Attributes:
        f (Callable): ``z -> f(z; x)``, a tuple of branch states to a tuple of the same shapes.
        z0 (tuple[Tensor]): The start state, one tensor per branch.
    """

    f: Callable[[Sequence[Tensor]], Tuple[Tensor, ...]]
    z0: Tuple[Tensor, ...]

    def flat(self) -> Tuple[Callable[[Tensor], Tensor], Tensor]:
        """The same map on ``(B, D)`` tensors (the solvers' layout) and the packed ``z0``."""
        packer = StatePacker(self.z0)
        return (lambda z: packer.pack(self.f(packer.unpack(z)))), packer.pack(self.z0)


@MODELS.register_module()
class MDEQ(BaseModule):
    """Multiscale Deep Equilibrium Model backbone.

    A stem (two conv3x3-BN-ReLU, stride ``stem_stride``) and an input injection (conv1x1-BN-ReLU
    into branch 0) are computed once per image; then the weight-tied multiscale layer
    ``f(z; x)`` (:class:`MDEQModule`: per-branch residual blocks with GroupNorm, then fusion) is
    solved for ``z* = f(z*)`` from ``z = 0`` by a root solver, with gradients by implicit
    differentiation, a phantom gradient, or, in the ``'unrolled'`` warm-up mode, ordinary
    backpropagation through ``unrolled_layers`` applications of ``f``.

    Branch ``i`` has ``num_channels[i]`` channels at stride ``stem_stride * 2**i``, so with four
    branches the outputs are at strides 4, 8, 16, 32 like HRNet's: the backbone drops into
    mmseg's ``EncoderDecoder`` (``FCNHead`` with ``input_transform='resize_concat'``) and
    mmpretrain's ``ImageClassifier`` (with :class:`MDEQClsNeck`).

    Training returns ``f(z*)`` (one differentiable call on the solver's result), evaluation
    returns ``z*`` (the lowest-residual iterate). After each forward the solver statistics are
    in :attr:`last_forward_stats` (and, after ``backward()``, :attr:`last_backward_stats`).
    Inside an MMEngine Runner's loops the backbone also logs them itself, as
    ``train/deq_*`` and ``val/deq_*`` / ``test/deq_*`` scalars, and warns when the forward
    solve stops converging (:attr:`stats_reporter`, a
    :class:`~mdeq_mm.models.backbones.solver_stats_reporter.SolverStatsReporter`), so a stock
    config needs no hook for that.

    In evaluation the solve can start from a given state per image instead of zeros (a warm
    start, e.g. the previous video frame's ``z*``: ``forward(x, init_state)``); an image
    whose warm start has a first residual no better than a cold start's restarts cold
    (:attr:`last_cold_restart`). :class:`mdeq_mm.apis.VideoWarmStart` keeps such states per
    video stream. With an ``initializer`` the cold start is its prediction from the input
    (a learned start) instead of zeros.

    An image with any NaN/Inf value is replaced by zeros before the stem, with a warning, so
    that nothing non-finite reaches the other images, the gradients or the BN statistics; its
    features get no gradient, and :attr:`last_failed` flags it.

    Args:
        arch (str | dict): A preset ('small', 'large', 'xl', 'cifar-tiny', 'cifar-large') or a
            dict with the keys ``num_channels`` (required), ``expansion`` (default 5),
            ``num_groups`` (GroupNorm groups in f, default 8), ``stem_stride`` (1, 2 or 4,
            default 4), ``injection_conv`` (conv1x1-BN-ReLU on the stem output before injecting
            it, default True) and ``post_gn_affine`` (default True). Defaults to 'small'.
        in_channels (int): Input image channels. Defaults to 3.
        dropout (float): Variational dropout rate inside f (one mask per forward, shared by
            all solver steps). Defaults to 0.
        forward_solver (dict): Forward solver settings: ``type`` ('broyden', 'anderson',
            'fixed_point'), ``max_iter``, ``tol``, ``stop_mode`` ('abs' or 'rel'), ``memory``, ...
            Defaults to ``dict(type='broyden', max_iter=26, tol=1e-3, stop_mode='rel')``.
        backward (dict): Gradient settings: ``dict(type='implicit', solver=..., max_iter=...,
            tol=...)`` for the exact implicit gradient with its own solver, or
            ``dict(type='phantom', k=..., tau=...)``. Defaults to an implicit Broyden solve with
            ``max_iter=27, tol=1e-3``.
        fallback (dict, optional): What to do with samples whose forward solve hits NaN/Inf or
            diverges; see :class:`mdeq_mm.deq.FallbackConfig`. Defaults to damped fixed-point.
        unrolled_layers (int): Applications of f in the ``'unrolled'`` mode. Defaults to 5.
        eval_max_iter (int, optional): Forward solver budget in evaluation (anytime
            inference); None uses ``forward_solver['max_iter']``. Defaults to None.
        eval_fixed_budget (bool): Evaluate with exactly that budget, without host syncs or
            data-dependent branches (:func:`mdeq_mm.deq.solve_fixed_budget`), so that the
            forward traces into a static graph for deployment (ONNX). The output equals the
            usual solve's; the forward fallback and the NaN/Inf warnings do not run, a warm
            start is refused. Defaults to False.
        deq_mode (str): 'equilibrium' or 'unrolled' training mode; hooks switch it at run
            time. Evaluation always solves for the equilibrium. Defaults to 'equilibrium'.
        initializer (dict, optional): A learned start state (e.g.
            ``dict(type='MDEQInitializer')``; ``num_channels`` is filled in, and
            ``norm_groups`` unless given): every solve of an image without a given start
            begins from its prediction instead of zeros.
            Setting ``initializer.fitting`` makes the forward train it instead (see
            :class:`~mdeq_mm.models.layers.MDEQInitializer`). None starts from zeros.
            Defaults to None.
        conv_cfg (dict, optional): Config of the stem and injection convs. Defaults to None.
        norm_cfg (dict): Norm of the stem and injection (outside f). Defaults to
            ``dict(type='BN', requires_grad=True)``.
        f_norm_cfg (dict): Norm inside f; only GroupNorm is accepted because batch statistics
            would change at every solver step. ``num_groups`` in it overrides the arch's.
            Defaults to ``dict(type='GN')``.
        init_cfg (dict | list[dict], optional): Initialization config. Defaults to
            :attr:`default_init_cfg`: every plain convolution (stem, injection, fusion) drawn
            from N(0, 0.01) as in the authors' code. The weight-normalized convolutions inside
            f are not touched by it (they have no ``weight`` parameter): their direction keeps
            PyTorch's default and their magnitude its norm. Norm layers start at 1 and 0.
            Every such conv feeds a norm, so the scale does not change the output, but it sets
            how far an optimizer step moves the weight relative to its size; PyTorch's default
            (std 0.04-0.12 here) learns markedly slower. Pass ``init_cfg=None`` for PyTorch's
            defaults or ``dict(type='Pretrained', ...)`` to load weights.
        pretrained (str, optional): Deprecated, as in mmseg's backbones: a checkpoint path or
            URL becomes ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)`` with a
            deprecation warning. A model-hub name (``open-mmlab://``, ``torchvision://``,
            ``mmcls://``, ...; what stock mmseg configs set in ``model.pretrained``) names
            another backbone's weights: it is ignored with a warning and MDEQ starts from
            ``init_cfg``. Giving both ``pretrained`` and ``init_cfg`` is an error.
            Defaults to None.

    Example:
        >>> import torch
        >>> from mdeq_mm.models import MDEQ
        >>> model = MDEQ(arch=dict(num_channels=(8, 16), expansion=2),
        ...              forward_solver=dict(type='broyden', max_iter=6))
        >>> _ = model.eval()
        >>> outputs = model(torch.rand(1, 3, 32, 32))
        >>> [tuple(out.shape) for out in outputs]
        [(1, 8, 8, 8), (1, 16, 4, 4)]
        >>> model.last_forward_stats.rel_res.shape
        torch.Size([1])
    """

    arch_settings: Dict[str, Dict[str, Any]] = {
        'small': dict(num_channels=(32, 64, 128, 256), expansion=5),
        'large': dict(num_channels=(80, 160, 320, 640), expansion=5),
        'xl': dict(num_channels=(88, 176, 352, 704), expansion=6),
        'cifar-tiny': dict(
            num_channels=(24, 24),
            expansion=5,
            stem_stride=1,
            injection_conv=False,
            post_gn_affine=False),
        'cifar-large': dict(
            num_channels=(32, 64, 128, 256), expansion=5, stem_stride=1),
    }
    default_init_cfg: Dict[str, Any] = dict(type='Normal', layer='Conv2d', std=0.01)
    arch_defaults: Dict[str, Any] = dict(
        expansion=5,
        num_groups=8,
        stem_stride=4,
        injection_conv=True,
        post_gn_affine=True)

    def __init__(self,
                 arch: Union[str, dict] = 'small',
                 in_channels: int = 3,
                 dropout: float = 0.0,
                 forward_solver: Optional[dict] = None,
                 backward: Optional[dict] = None,
                 fallback: Optional[dict] = None,
                 unrolled_layers: int = 5,
                 eval_max_iter: Optional[int] = None,
                 eval_fixed_budget: bool = False,
                 deq_mode: str = 'equilibrium',
                 initializer: Optional[dict] = None,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 f_norm_cfg: dict = dict(type='GN'),
                 init_cfg: Optional[Union[dict, List[dict]]] = default_init_cfg,
                 pretrained: Optional[str] = None) -> None:
        super().__init__(self._init_cfg_with(pretrained, init_cfg))
        self.arch = self._parse_arch(arch, f_norm_cfg)
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f'in_channels must be a positive int, got {in_channels!r}')
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f'dropout must be in [0, 1), got {dropout!r}')
        self.in_channels = in_channels
        self.num_channels: Tuple[int, ...] = tuple(self.arch['num_channels'])
        self.num_branches = len(self.num_channels)
        self.stem_stride: int = self.arch['stem_stride']
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg

        self.stem = self._make_stem()
        self.injection = self._make_injection()
        self.f = MDEQModule(
            self.num_channels,
            expansion=self.arch['expansion'],
            num_groups=self.arch['num_groups'],
            dropout=dropout,
            post_gn_affine=self.arch['post_gn_affine'])
        self.deq = DEQCore(
            forward_solver or dict(type='broyden', max_iter=26, tol=1e-3, stop_mode='rel'),
            backward or dict(type='implicit', solver='broyden', max_iter=27, tol=1e-3),
            fallback,
            n_layers=unrolled_layers)
        self.eval_max_iter = eval_max_iter
        self.eval_fixed_budget = eval_fixed_budget
        self.deq_mode = deq_mode
        # the initializer's outputs are normalized as f's last GroupNorm normalizes z*
        self.initializer = (None if initializer is None else MODELS.build(
            {'norm_groups': self.arch['num_groups'] // 2, **initializer,
             'num_channels': self.num_channels}))
        self.jacobian_probes = 0
        self._last_nonfinite_input: Optional[Tensor] = None
        self._last_cold_restart: Optional[Tensor] = None
        self._last_probe_f_evals = 0
        self.stats_reporter = SolverStatsReporter()

    @classmethod
    def _init_cfg_with(cls, pretrained: Optional[str],
                       init_cfg: Optional[Union[dict, List[dict]]]
                       ) -> Optional[Union[dict, List[dict]]]:
        """The init_cfg that ``pretrained`` (mmseg's deprecated argument) asks for."""
        if pretrained is None:
            return init_cfg
        if not isinstance(pretrained, str):
            raise TypeError(f'pretrained must be a str or None, got {pretrained!r}')
        if init_cfg is not cls.default_init_cfg:
            raise ValueError(f'MDEQ got both pretrained={pretrained!r} and init_cfg={init_cfg!r}; '
                             "give only init_cfg=dict(type='Pretrained', checkpoint=...)")
        if pretrained.startswith(HUB_SCHEMES):
            warnings.warn(
                f'MDEQ ignores pretrained={pretrained!r}: model-hub weights belong to another '
                'backbone (a stock config sets them in model.pretrained), so MDEQ starts from '
                'its own initialization. Write model = dict(pretrained=None, ...) to silence '
                "this, or backbone init_cfg=dict(type='Pretrained', checkpoint=PATH) to load "
                'MDEQ weights')
            return init_cfg
        # worded as mmseg's backbones do (a UserWarning, so that it shows by default)
        warnings.warn('DeprecationWarning: pretrained is deprecated, please use '
                      "init_cfg=dict(type='Pretrained', checkpoint=...) instead")
        return dict(type='Pretrained', checkpoint=pretrained)

    @classmethod
    def resolve_arch(cls, arch: Union[str, dict]) -> Dict[str, Any]:
        """The complete arch dict of a preset name or a partial dict: known keys only, the
        channels checked, the defaults filled in (e.g. to compare weights with an arch).

        Example:
            >>> MDEQ.resolve_arch(dict(num_channels=(8, 16)))['expansion']
            5
        """
        if isinstance(arch, str):
            if arch not in cls.arch_settings:
                raise ValueError(f'unknown MDEQ arch {arch!r}; choose one of '
                                 f'{sorted(cls.arch_settings)} or pass a dict')
            arch = cls.arch_settings[arch]
        elif not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or a dict, got {type(arch).__name__}')
        unknown = sorted(set(arch) - set(cls.arch_defaults) - {'num_channels'})
        if unknown:
            raise ValueError(f'unknown MDEQ arch key(s) {unknown}; valid keys: '
                             f"{sorted(['num_channels', *cls.arch_defaults])}")
        if 'num_channels' not in arch:
            raise ValueError('an MDEQ arch dict needs num_channels, e.g. (32, 64, 128, 256)')
        channels = arch['num_channels']
        if (not isinstance(channels, (tuple, list)) or not channels
                or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0
                           for c in channels)):
            raise ValueError('MDEQ arch num_channels must be a non-empty tuple of positive ints, '
                             f'one per branch, e.g. (32, 64, 128, 256); got {channels!r}')
        return {**cls.arch_defaults, **arch}

    @classmethod
    def _parse_arch(cls, arch: Union[str, dict], f_norm_cfg: dict) -> Dict[str, Any]:
        """Resolve a preset name or dict into a complete arch dict this class can build."""
        parsed = cls.resolve_arch(arch)
        if parsed['stem_stride'] not in STEM_STRIDES:
            raise ValueError(f"stem_stride must be one of {STEM_STRIDES}, got "
                             f"{parsed['stem_stride']!r}")
        if not parsed['injection_conv'] and len(parsed['num_channels']) > 2:
            raise ValueError('injection_conv=False (stem output injected directly) is only '
                             'supported with at most 2 branches')
        norm_type = (f_norm_cfg or {}).get('type', 'GN')
        if norm_type != 'GN':
            raise ValueError(
                f"f_norm_cfg type {norm_type!r} is not allowed inside f: only GroupNorm "
                "('GN') works there, because batch statistics would change at every solver "
                'step and SyncBN would deadlock when ranks stop after different numbers of '
                'steps. BN/SyncBN are fine in norm_cfg (stem and injection).')
        unknown = sorted(set(f_norm_cfg) - {'type', 'num_groups'})
        if unknown:
            raise ValueError(f'unknown f_norm_cfg key(s) {unknown}; valid: type, num_groups')
        if 'num_groups' in f_norm_cfg:
            parsed['num_groups'] = f_norm_cfg['num_groups']
        return parsed

    def _make_stem(self) -> nn.Sequential:
        """conv3x3-norm-ReLU twice, each conv of stride 2 while the stem stride allows."""
        c0 = self.num_channels[0]
        layers: List[nn.Module] = []
        for i, in_ch in enumerate((self.in_channels, c0)):
            stride = 2 if self.stem_stride >= 2**(i + 1) else 1
            layers += [
                build_conv_layer(
                    self.conv_cfg, in_ch, c0, 3, stride=stride, padding=1, bias=False),
                build_norm_layer(self.norm_cfg, c0)[1],
                nn.ReLU(inplace=True),
            ]
        return nn.Sequential(*layers)

    def _make_injection(self) -> Optional[nn.Sequential]:
        if not self.arch['injection_conv']:
            return None
        c0 = self.num_channels[0]
        return nn.Sequential(
            build_conv_layer(self.conv_cfg, c0, c0, 1, bias=False),
            build_norm_layer(self.norm_cfg, c0)[1], nn.ReLU(inplace=True))

    @property
    def total_stride(self) -> int:
        """Stride of the coarsest branch; input sizes must be divisible by it."""
        return self.stem_stride * 2**(self.num_branches - 1)

    @property
    def deq_mode(self) -> str:
        """Training mode: 'equilibrium' (solver) or 'unrolled' (warm-up)."""
        return self._deq_mode

    @deq_mode.setter
    def deq_mode(self, mode: str) -> None:
        if mode not in DEQ_MODES:
            raise ValueError(f'deq_mode must be one of {DEQ_MODES}, got {mode!r}')
        self._deq_mode = mode

    @property
    def eval_max_iter(self) -> Optional[int]:
        """Forward solver budget in evaluation (None: the training budget)."""
        return self.deq.eval_max_iter

    @eval_max_iter.setter
    def eval_max_iter(self, value: Optional[int]) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f'eval_max_iter must be None or an int >= 1, got {value!r}')
        self.deq.eval_max_iter = value

    @property
    def eval_fixed_budget(self) -> bool:
        """Evaluation spends the whole budget with no host sync (traceable, exportable)."""
        return self.deq.eval_fixed_budget

    @eval_fixed_budget.setter
    def eval_fixed_budget(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ValueError(f'eval_fixed_budget must be a bool, got {value!r}')
        self.deq.eval_fixed_budget = value

    @property
    def last_forward_stats(self) -> Optional[SolverStats]:
        """Forward solver statistics of the latest equilibrium forward."""
        return self.deq.last_forward_stats

    @property
    def last_backward_stats(self) -> Optional[SolverStats]:
        """Statistics of the latest implicit backward solve."""
        return self.deq.last_backward_stats

    @property
    def last_nonfinite_input(self) -> Optional[Tensor]:
        """``(B,)`` bool, the images of the latest forward that had NaN/Inf values."""
        return self._last_nonfinite_input

    @property
    def last_failed(self) -> Optional[Tensor]:
        """``(B,)`` bool, the images of the latest forward whose features come from a fallback
        and should not be trusted: the image had NaN/Inf values, or its forward solve hit
        NaN/Inf or diverged. None before the first forward."""
        failed = self._last_nonfinite_input
        stats = self.last_forward_stats
        if failed is not None and stats is not None:
            failed = failed | stats.failed
        return failed

    @property
    def last_cold_restart(self) -> Optional[Tensor]:
        """``(B,)`` bool, the images of the latest warm-started forward whose warm start was no
        better than a cold start and that were solved from their cold start (zeros, or the
        learned start) instead; None after a forward without ``init_state``."""
        return self._last_cold_restart

    @property
    def last_f_evals(self) -> Optional[Tensor]:
        """``(B,)`` long, evaluations of f by each image's latest forward solve, counting the
        evaluation that rejected a warm start (the whole batch pays it) but not a fallback
        re-solve. None before the first equilibrium forward."""
        stats = self.last_forward_stats
        return None if stats is None else stats.steps + self._last_probe_f_evals

    @property
    def jacobian_loss(self) -> Optional[Tensor]:
        """Hutchinson estimate of ||J_f||_F^2 / numel from the latest training forward, if
        ``jacobian_probes > 0`` was set for it (hooks set it on regularized iterations)."""
        return self.deq.last_jacobian_loss

    @property
    def last_trajectory(self) -> Optional[Tuple[Tuple[Tensor, ...], ...]]:
        """States sampled along the latest training solve, earliest first, each shaped like the
        output and with an inexact gradient, if ``deq.trajectory_cfg`` asks for them (see
        :class:`mdeq_mm.deq.TrajectoryConfig`); an image with NaN/Inf values gets no gradient
        from them. None otherwise."""
        states = self.deq.last_trajectory
        nonfinite = self._last_nonfinite_input
        if states is None or nonfinite is None or not bool(nonfinite.any()):
            return states
        keep = ~nonfinite.view(-1, 1, 1, 1)
        return tuple(tuple(torch.where(keep, z, z.detach()) for z in state) for state in states)

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'MDEQ expects input of shape (B, {self.in_channels}, H, W), '
                             f'got {tuple(x.shape)}')
        h, w = x.shape[-2:]
        if h % self.total_stride or w % self.total_stride:
            raise ValueError(
                f'MDEQ input height and width must be divisible by {self.total_stride} '
                f'(stem stride {self.stem_stride} x 2^{self.num_branches - 1} for '
                f'{self.num_branches} branches), got {h}x{w}; pad the input, e.g. with '
                f'size_divisor={self.total_stride} in the data preprocessor')

    def _zero_nonfinite_images(self, x: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """``x`` with the images that hold NaN/Inf set to zero, and their ``(B,)`` mask (None if
        every image is finite); the mask is kept for :attr:`last_nonfinite_input`."""
        self._check_input(x)
        nonfinite = ~torch.isfinite(x).flatten(1).all(dim=1)
        self._last_nonfinite_input = nonfinite
        if not bool(nonfinite.any()):
            return x, None
        warnings.warn(f'MDEQ got {int(nonfinite.sum())} of {len(x)} image(s) with NaN/Inf '
                      'values; they were replaced by zeros, their features get no gradient '
                      'and last_failed flags them')
        return x.masked_fill(nonfinite.view(-1, 1, 1, 1), 0.0), nonfinite

    def initial_state(self, x: Tensor) -> Tuple[Tensor, ...]:
        """The cold start of every branch, given the branch-0 injection ``x``: the
        initializer's prediction (detached), or zeros without one."""
        if self.initializer is not None:
            return tuple(z.detach() for z in self.initializer(x))
        return self.zero_state(x)

    def zero_state(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Zeros for every branch, given the branch-0 injection ``x``."""
        b, _, h, w = x.shape
        return tuple(
            x.new_zeros(b, c, h // 2**i, w // 2**i) for i, c in enumerate(self.num_channels))

    def injection_of(self, x: Tensor) -> Tuple[Optional[Tensor], ...]:
        """The input injection of f for images ``x``: the stem output (through the injection
        conv) for branch 0, None for the others. :meth:`fixed_point_problem` builds the map
        ``z -> f(z; x)`` from it.

        Args:
            x (Tensor): Images of shape (B, in_channels, H, W).

        Returns:
            tuple[Tensor | None]: ``num_branches`` entries, a tensor shaped like branch 0.
        """
        self._check_input(x)
        x = self.stem(x)
        injection = self.injection(x) if self.injection is not None else x
        return (injection, ) + (None, ) * (self.num_branches - 1)

    def fixed_point_problem(self,
                            x: Tensor,
                            init_state: Optional[Sequence[Tensor]] = None) -> FixedPointProblem:
        """The map ``z -> f(z; x)`` that :meth:`forward` solves for images ``x``, and its start.

        Computes the stem and injection once and prepares f for one forward (normalized
        weights cached, a new dropout mask in training), so call it once per batch and reuse
        the map, e.g. to race solvers on it or to probe its Jacobian at the equilibrium.

        Args:
            x (Tensor): Images of shape (B, in_channels, H, W), H and W divisible by
                :attr:`total_stride`.
            init_state (Sequence[Tensor], optional): The start state, one tensor per branch
                shaped like the zeros it replaces (e.g. a previous ``z*``); detached. None
                (and an image whose state is all zeros) starts from :meth:`initial_state`.
                Defaults to None.

        Returns:
            FixedPointProblem: ``(f, z0)``; ``.flat()`` gives the map on flat ``(B, D)`` states.

        Example:
            >>> import torch
            >>> from mdeq_mm.models import MDEQ
            >>> model = MDEQ(arch=dict(num_channels=(8, 16), expansion=2)).eval()
            >>> f, z0 = model.fixed_point_problem(torch.rand(2, 3, 32, 32))
            >>> [tuple(z.shape) for z in f(z0)]
            [(2, 8, 8, 8), (2, 16, 4, 4)]
            >>> flat_f, flat_z0 = model.fixed_point_problem(torch.rand(2, 3, 32, 32)).flat()
            >>> tuple(flat_f(flat_z0).shape)
            (2, 768)
        """
        return self._problem(self.injection_of(x), init_state)

    def _problem(self, injection: Tuple[Optional[Tensor], ...],
                 init_state: Optional[Sequence[Tensor]]) -> FixedPointProblem:
        """:meth:`fixed_point_problem` given the input injection."""
        z0 = self.initial_state(injection[0])
        if init_state is not None:
            z0 = self._checked_state(init_state, z0)
        self.f.reset(z0)
        return FixedPointProblem(lambda z: self.f(z, injection), z0)

    def _checked_state(self, state: Sequence[Tensor],
                       cold: Tuple[Tensor, ...]) -> Tuple[Tensor, ...]:
        """``state`` detached and cast like the cold start ``cold``, after checking it has
        its shapes; an image whose state is all zeros takes its cold start."""
        shapes = [tuple(z.shape) for z in cold]
        got = [tuple(getattr(z, 'shape', ())) for z in state]
        if got != shapes:
            raise ValueError(f'init_state must hold one tensor per branch with the shapes '
                             f'{shapes} for this input, got {got}')
        state = tuple(s.detach().to(z) for s, z in zip(state, cold))
        if self.initializer is None:
            return state
        given = _nonzero_images(state).view(-1, 1, 1, 1)
        return tuple(torch.where(given, s, z) for s, z in zip(state, cold))

    def forward(self, x: Tensor,
                init_state: Optional[Sequence[Tensor]] = None) -> Tuple[Tensor, ...]:
        """Solve for the equilibrium features.

        Args:
            x (Tensor): Images of shape (B, in_channels, H, W), H and W divisible by
                :attr:`total_stride`.
            init_state (Sequence[Tensor], optional): Evaluation only: the state to start each
                image's solve from, one tensor per branch shaped like the output (e.g. the
                previous video frame's output). An image whose state is all zeros starts cold
                (:meth:`initial_state`); one whose warm start's first relative residual is
                not below a cold start from zeros (:data:`COLD_START_REL_RES`) is solved
                again from its cold start (a scene cut), which costs the batch one evaluation
                of f. None starts every image cold. Defaults to None.

        Returns:
            tuple[Tensor]: ``num_branches`` feature maps, finest first.
        """
        if init_state is not None and self.training:
            raise ValueError('init_state (a warm start) is for evaluation only; training '
                             'always solves from zeros. Call eval() first.')
        if not self.training and self.eval_fixed_budget:
            return self._forward_fixed_budget(x, init_state)
        x, nonfinite = self._zero_nonfinite_images(x)
        if self.initializer is not None and self.initializer.fitting:
            return self._fit_initializer(x)
        injection = self.injection_of(x)
        f, cold = self._problem(injection, None)
        self._last_cold_restart = None
        self._last_probe_f_evals = 0
        mode = self.deq_mode if self.training else 'equilibrium'
        if init_state is None:
            outs = tuple(self.deq(f, cold, mode=mode, jacobian_probes=self.jacobian_probes))
        else:
            outs = self._solve_warm(f, self._checked_state(init_state, cold), cold,
                                    _nonzero_images(init_state))
        # the graph holds the normalized weights the backward needs; the cache need not
        self.f.release()
        self.stats_reporter.report_forward(self.training, self._last_nonfinite_input,
                                           self.last_forward_stats)
        if mode == 'equilibrium' and injection[0].requires_grad:
            # the injection's gradient comes after the implicit backward solve
            injection[0].register_hook(
                lambda grad: self.stats_reporter.report_backward(self.last_backward_stats))
        if nonfinite is None:
            return outs
        keep = ~nonfinite.view(-1, 1, 1, 1)
        return tuple(torch.where(keep, out, out.detach()) for out in outs)

    def train(self, mode: bool = True) -> 'MDEQ':
        """Set training mode; switching to eval starts a new evaluation's statistics."""
        if not mode:
            self.stats_reporter.reset_eval()
        return super().train(mode)

    def _forward_fixed_budget(self, x: Tensor,
                              init_state: Optional[Sequence[Tensor]]) -> Tuple[Tensor, ...]:
        """The evaluation forward of ``eval_fixed_budget``: the same result as :meth:`forward`
        with the same computation for every input, so that it traces into a static graph."""
        if init_state is not None:
            raise ValueError('init_state (a warm start) decides on the host whether to restart '
                             'an image from zeros; it cannot run with eval_fixed_budget=True')
        self._check_input(x)
        nonfinite = ~torch.isfinite(x).flatten(1).all(dim=1)
        self._last_nonfinite_input = nonfinite
        x = x.masked_fill(nonfinite.view(-1, 1, 1, 1), 0.0)
        f, z0 = self.fixed_point_problem(x)
        self._last_cold_restart = None
        self._last_probe_f_evals = 0
        outs = tuple(self.deq(f, z0))
        self.f.release()
        return outs

    def _solve_warm(self, f: Callable[[Sequence[Tensor]], Tuple[Tensor, ...]],
                    z0: Tuple[Tensor, ...], cold: Tuple[Tensor, ...],
                    warm: Tensor) -> Tuple[Tensor, ...]:
        """Solve from ``z0``; if some ``warm`` image's start is no better than zeros (judged on
        the first step), stop there and solve again with those images from their ``cold``
        start."""
        warm = warm.to(z0[0].device)
        worse = torch.zeros_like(warm)

        def stop_if_worse_than_cold(state: SolverState) -> bool:
            if state.step != 1:
                return False
            worse.copy_(warm & ~(state.rel_res < COLD_START_REL_RES))
            return bool(worse.any())

        outs = tuple(self.deq(f, z0, callback=stop_if_worse_than_cold))
        self._last_cold_restart = worse
        if bool(worse.any()):
            self._last_probe_f_evals = 1
            keep = ~worse.view(-1, 1, 1, 1)
            outs = tuple(self.deq(f, tuple(torch.where(keep, z, c) for z, c in zip(z0, cold))))
        return outs

    def _fit_initializer(self, x: Tensor) -> Tuple[Tensor, ...]:
        """The initializer's training forward: ``z*`` solved from zeros (detached), with the
        losses of the initializer's prediction kept in ``initializer.last_losses``."""
        injection = self.injection_of(x)
        zeros = self.zero_state(injection[0])
        self.f.reset(zeros)
        outs, self.initializer.last_losses = self.initializer.fit(
            lambda z: self.f(z, injection), injection[0], zeros)
        self.f.release()
        return outs


def _nonzero_images(state: Sequence[Tensor]) -> Tensor:
    """``(B,)`` bool: the images whose state has a nonzero value in some branch."""
    return torch.stack([z.flatten(1).ne(0).any(dim=1) for z in state]).any(dim=0)
