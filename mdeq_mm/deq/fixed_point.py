"""Damped fixed-point iteration ``z <- tau f(z) + (1 - tau) z``."""
import torch
from torch import Tensor


class FixedPointSolver:
    """Damped Picard iteration; converges when ``f`` is contractive.

    Slow but cheap (no memory), and a robust fallback when a quasi-Newton
    solve blows up: with ``tau < 1`` it also tames oscillating maps.

    Args:
        z0 (Tensor): ``(B, D)`` initial state in the solver dtype.
        max_iter (int): Evaluation budget (unused, part of the solver interface).
        tau (float): Damping in ``(0, 1]``; 1 is plain iteration. Default: 1.0.
    """

    options = ('tau',)

    def __init__(self, z0: Tensor, max_iter: int, tau: float = 1.0) -> None:
        self.tau = tau
        self.degenerate = torch.zeros((), dtype=torch.long, device=z0.device)

    def propose(self, z: Tensor, fz: Tensor, g: Tensor, active: Tensor) -> Tensor:
        """Next iterate from ``z`` and ``f(z)`` (``g = f(z) - z`` unused)."""
        if self.tau == 1.0:
            return fz
        return self.tau * fz + (1.0 - self.tau) * z
