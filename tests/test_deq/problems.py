"""Fixed-point problems with known solutions, shared by the solver tests (float64 throughout,
so comparisons do not depend on the BLAS kernel)."""
from typing import Callable, List, Tuple

import torch
from torch import Tensor

DTYPE = torch.float64


def linear_problem(batch=3, dim=16, radius=0.97, seed=0):
    """``z = A z + b`` with a non-symmetric A of spectral norm ``radius``.

    A is nearly normal with eigenvalues spread over ``[-0.9, 0.95]``, so plain
    fixed-point iteration is slow (rate close to ``radius``).
    """
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(batch, dim, dim, generator=gen, dtype=DTYPE))
    eig = torch.linspace(0.95, -0.9, dim, dtype=DTYPE).expand(batch, dim)
    skew = 0.05 * torch.randn(batch, dim, dim, generator=gen, dtype=DTYPE).triu(1)
    a = q @ (torch.diag_embed(eig) + skew) @ q.transpose(1, 2)
    a = radius * a / torch.linalg.matrix_norm(a, ord=2)[:, None, None]
    b = torch.randn(batch, dim, generator=gen, dtype=DTYPE)
    z_star = torch.linalg.solve(torch.eye(dim, dtype=DTYPE) - a, b)
    return (lambda z: torch.einsum('bij,bj->bi', a, z) + b), z_star


def recording(f: Callable[[Tensor], Tensor]) -> Tuple[Callable[[Tensor], Tensor], List[Tensor]]:
    """``f`` wrapped to record a copy of every iterate it is called with, and that list."""
    inputs: List[Tensor] = []

    def recording_f(z: Tensor) -> Tensor:
        inputs.append(z.clone())
        return f(z)

    return recording_f, inputs
