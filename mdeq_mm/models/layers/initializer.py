"""A learned start state for the MDEQ solve (the initializer of Bai et al., 2022, "Neural
Deep Equilibrium Solvers")."""
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor

from mdeq_mm.deq import SolverConfig, SolverStats, StatePacker, solve

# Keeps the relative distances finite for an all-zero target or output.
NORM_EPS = 1e-6


@MODELS.register_module()
class MDEQInitializer(BaseModule):
    """Predicts the equilibrium of every MDEQ branch from the branch-0 input injection.

    Two depthwise-separable convolutions (depthwise 3x3, then 1x1, then ReLU) turn the
    injection into ``hidden_channels`` features; branch ``i`` average-pools them by ``2**i``
    and maps them to its channels with a 1x1 convolution, followed by a GroupNorm of
    ``norm_groups`` groups: the MDEQ's ``f`` ends in one, so its equilibrium is normalized per
    group and the prediction starts with the right scale (measured on the demo model after 60
    fitting iterations: relative distance to ``z*`` 0.36 against 0.45 without the norm). The
    outputs start at zero (the norms' scale and shift, or without norms the convolutions), so
    an untrained initializer predicts zeros, the usual cold start: loading weights without it
    (e.g. the authors' checkpoints) solves exactly as before.

    It is trained after the MDEQ, with everything else frozen (see
    :class:`mdeq_mm.engine.hooks.InitializerTrainingHook`): while :attr:`fitting` is set the
    MDEQ's forward calls :meth:`fit`, keeps the losses in :attr:`last_losses` and returns the
    target. :meth:`fit` solves each image from
    zeros to ``target_solver``'s tolerance for the target ``z*`` and returns the losses of the
    prediction ``z0``: its relative distance ``||z0 - z*|| / ||z*||`` and its relative
    residual ``||f(z0) - z0|| / ||f(z0)||``, the first step of the solver's trajectory.

    Args:
        num_channels (Sequence[int]): Channels of each branch, finest first (the MDEQ fills
            them in).
        hidden_channels (int, optional): Width of the shared features. Defaults to the
            channels of branch 0.
        norm_groups (int, optional): GroupNorm groups of each output (the MDEQ fills in
            those of its last GroupNorm); None: no norm. Defaults to None.
        target_solver (dict, optional): Forward solver settings of the target solve (see
            :func:`mdeq_mm.deq.solve`). Defaults to
            ``dict(type='broyden', max_iter=30, tol=1e-4, stop_mode='rel')``.
        distance_weight (float): Weight of the distance loss. Defaults to 1.
        residual_weight (float): Weight of the residual loss. Defaults to 1.
        init_cfg (dict | list[dict], optional): Initialization config of the hidden
            convolutions. Defaults to None.

    Example:
        >>> import torch
        >>> init = MDEQInitializer(num_channels=(8, 16))
        >>> z0 = init(torch.rand(2, 8, 16, 16))
        >>> [tuple(z.shape) for z in z0]
        [(2, 8, 16, 16), (2, 16, 8, 8)]
        >>> all(bool((z == 0).all()) for z in z0)  # untrained: the cold start
        True
    """

    default_target_solver = dict(type='broyden', max_iter=30, tol=1e-4, stop_mode='rel')

    def __init__(self,
                 num_channels: Sequence[int],
                 hidden_channels: Optional[int] = None,
                 norm_groups: Optional[int] = None,
                 target_solver: Optional[dict] = None,
                 distance_weight: float = 1.0,
                 residual_weight: float = 1.0,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        self.num_channels = tuple(num_channels)
        if not self.num_channels or not all(
                isinstance(c, int) and not isinstance(c, bool) and c > 0
                for c in self.num_channels):
            raise ValueError('MDEQInitializer num_channels must be positive ints, one per '
                             f'branch, got {num_channels!r}')
        hidden = self.num_channels[0] if hidden_channels is None else hidden_channels
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f'MDEQInitializer hidden_channels must be a positive int, got '
                             f'{hidden_channels!r}')
        for name, weight in (('distance_weight', distance_weight),
                             ('residual_weight', residual_weight)):
            if not weight >= 0:
                raise ValueError(f'MDEQInitializer {name} must be >= 0, got {weight!r}')
        c0 = self.num_channels[0]
        self.hidden_channels = hidden
        self.target_solver = SolverConfig.from_dict(
            {**self.default_target_solver, **(target_solver or {})})
        self.distance_weight = distance_weight
        self.residual_weight = residual_weight
        self.features = nn.Sequential(
            *_separable_conv(c0, hidden), *_separable_conv(hidden, hidden))
        self.heads = nn.ModuleList(nn.Conv2d(hidden, c, 1) for c in self.num_channels)
        self.norms = None
        if norm_groups is not None:
            valid = (isinstance(norm_groups, int) and not isinstance(norm_groups, bool)
                     and norm_groups >= 1
                     and all(c % norm_groups == 0 for c in self.num_channels))
            if not valid:
                raise ValueError('MDEQInitializer norm_groups must be a positive int that '
                                 f'divides every branch\'s channels {self.num_channels}, got '
                                 f'{norm_groups!r}')
            self.norms = nn.ModuleList(nn.GroupNorm(norm_groups, c) for c in self.num_channels)
        self.fitting = False
        self.last_losses: Optional[Dict[str, Tensor]] = None
        self.last_target_stats: Optional[SolverStats] = None
        self._zero_outputs()

    def _zero_outputs(self) -> None:
        """Make every output zero: the norms' scale and shift, or the last convolutions."""
        for layer in (self.heads if self.norms is None else self.norms):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def init_weights(self) -> None:
        """Initialize the convolutions by ``init_cfg``; the outputs stay at zero."""
        super().init_weights()
        self._zero_outputs()

    def forward(self, injection: Tensor) -> Tuple[Tensor, ...]:
        """The start state of every branch for the branch-0 injection ``(B, C_0, H, W)``."""
        if injection.dim() != 4 or injection.shape[1] != self.num_channels[0]:
            raise ValueError(f'MDEQInitializer expects an injection of shape '
                             f'(B, {self.num_channels[0]}, H, W), got {tuple(injection.shape)}')
        hidden = self.features(injection)
        outs = [head(F.avg_pool2d(hidden, 2**i) if i else hidden)
                for i, head in enumerate(self.heads)]
        if self.norms is not None:
            outs = [norm(out) for norm, out in zip(self.norms, outs)]
        return tuple(outs)

    def fit(self, f: Callable[[Sequence[Tensor]], Tuple[Tensor, ...]], injection: Tensor,
            zeros: Sequence[Tensor]) -> Tuple[Tuple[Tensor, ...], Dict[str, Tensor]]:
        """Solve from ``zeros`` for the target and return it with the losses of the prediction.

        Args:
            f (Callable): The MDEQ's map ``z -> f(z; x)`` on tuples of branch states.
            injection (Tensor): The branch-0 injection that ``f`` was built with.
            zeros (Sequence[Tensor]): The cold start, one tensor per branch.

        Returns:
            tuple: The target ``z*`` (detached, one tensor per branch) and the weighted losses
            ``loss_init_dist`` and ``loss_init_res`` (batch means); the target solve's
            statistics are in :attr:`last_target_stats`.
        """
        packer = StatePacker(zeros)
        with torch.no_grad():
            z_star, self.last_target_stats = solve(
                lambda z: packer.pack(f(packer.unpack(z))), packer.pack(zeros),
                **self.target_solver.solve_kwargs())
        z0 = packer.pack(self(injection))
        f_z0 = packer.pack(f(packer.unpack(z0)))
        distance = _norm(z0 - z_star) / (_norm(z_star) + NORM_EPS)
        residual = _norm(f_z0 - z0) / (_norm(f_z0) + NORM_EPS)
        losses = dict(loss_init_dist=self.distance_weight * distance.mean(),
                      loss_init_res=self.residual_weight * residual.mean())
        return packer.unpack(z_star), losses


def _separable_conv(in_channels: int, out_channels: int) -> Tuple[nn.Module, ...]:
    """Depthwise 3x3, pointwise 1x1, ReLU."""
    return (nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels),
            nn.Conv2d(in_channels, out_channels, 1), nn.ReLU(inplace=True))


def _norm(z: Tensor) -> Tensor:
    """Per-sample 2-norm of a ``(B, D)`` tensor."""
    return torch.linalg.vector_norm(z, dim=1)
