"""Evaluations of a forward solve kept with their autograd graph, for the steps after it."""
from typing import Callable, Dict, Iterable, Optional, Tuple

import torch
from torch import Tensor

# An evaluation of f kept with its graph: (input, f(input)), the input a detached copy
Capture = Tuple[Tensor, Tensor]


class CapturingMap:
    """A flat map for :func:`~mdeq_mm.deq.solve` that keeps chosen evaluations' graphs.

    The solve runs without autograd, and the differentiable steps after it (the training
    output ``f(z*)``, the first step of each state sampled from the solve) evaluate ``f`` at
    states the solve has already evaluated. This map runs those evaluations with autograd,
    keeps ``(z, f(z))`` and hands the solver ``f(z)`` detached, so each such step reuses an
    evaluation instead of running ``f`` once more: the same values and gradients for one
    forward pass of ``f`` less.

    Evaluation ``i`` (0 is that of ``z0``) is kept in :attr:`samples` if ``i`` is one of
    ``sample_steps``, and as :attr:`end` (the latest one only) if it is one of ``end_steps``,
    the evaluations after which the solve may stop.

    Args:
        f (Callable): The flat map ``(B, D) -> (B, D)``.
        sample_steps (Iterable[int]): Evaluations kept in :attr:`samples`.
        end_steps (Iterable[int]): Evaluations that may be the solve's last.
        end_input_grad (bool): Whether the input of an end evaluation requires grad (an
            implicit backward, or a Jacobian penalty taken at that step). Defaults to False.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor(0.5))
        >>> f = CapturingMap(lambda z: w * z + 1, sample_steps=(1, ), end_steps=(2, ))
        >>> with torch.no_grad():
        ...     z = torch.zeros(1, 1)
        ...     for _ in range(3):
        ...         z = f(z)
        >>> z_in, fz = f.samples[1]
        >>> fz.requires_grad, f.end[0]
        (True, 2)
    """

    def __init__(self,
                 f: Callable[[Tensor], Tensor],
                 sample_steps: Iterable[int] = (),
                 end_steps: Iterable[int] = (),
                 end_input_grad: bool = False) -> None:
        self.f = f
        self.samples: Dict[int, Optional[Capture]] = dict.fromkeys(sample_steps)
        self.end_steps = frozenset(end_steps)
        self.end_input_grad = end_input_grad
        self.end: Optional[Tuple[int, Capture]] = None
        self.calls = 0

    def __call__(self, z: Tensor) -> Tensor:
        step = self.calls
        self.calls += 1
        at_end = step in self.end_steps
        if not at_end and step not in self.samples:
            return self.f(z)
        if at_end:
            self.end = None  # its graph is not kept alive beside the next one
        z_in = z.detach().clone().requires_grad_(at_end and self.end_input_grad)
        # casts that autocast cached under the solve's no_grad carry no graph
        torch.clear_autocast_cache()
        with torch.enable_grad():
            fz = self.f(z_in)
        if step in self.samples:
            self.samples[step] = (z_in, fz)
        if at_end:
            self.end = (step, (z_in, fz))
        return fz.detach()

    def end_at(self, z_star: Tensor, nfe: int) -> Optional[Capture]:
        """The kept evaluation of ``z_star``, if the solve's last one (``nfe - 1``) was kept as
        :attr:`end` and its input is ``z_star`` (the solve's best iterate) exactly."""
        if self.end is None or self.end[0] != nfe - 1:
            return None
        capture = self.end[1]
        return capture if torch.equal(capture[0], z_star) else None
