"""Jacobian diagnostics of the DEQ map: Frobenius regularizer and spectral radius."""
from typing import Callable, Sequence, Tuple, Union

import torch
from torch import Tensor

from .state import StatePacker

TensorOrTuple = Union[Tensor, Sequence[Tensor]]
PROBES = ('rademacher', 'gaussian')


def _as_tuple(x: TensorOrTuple) -> Tuple[Tensor, ...]:
    return (x, ) if isinstance(x, Tensor) else tuple(x)


def _probe_like(t: Tensor, probe: str) -> Tensor:
    if probe == 'gaussian':
        return torch.randn_like(t)
    return torch.randint_like(t, 2) * 2 - 1


def _accurate(t: Tensor) -> Tensor:
    """``t`` in at least float32, so reductions of half-precision values stay accurate."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _sample_sq_norm(parts: Sequence[Tensor]) -> Tensor:
    """``(B,)`` squared norm per sample over all tensors of a state."""
    return sum(_accurate(p).flatten(1).pow(2).sum(dim=1) for p in parts)


def jacobian_frobenius_reg(f_z: TensorOrTuple,
                           z: TensorOrTuple,
                           n_probes: int = 1,
                           probe: str = 'rademacher') -> Tensor:
    """Hutchinson estimate of ``||J_f(z)||_F^2 / numel(z)``.

    Uses ``E_v ||v^T J||^2 = ||J||_F^2`` for probes with identity covariance;
    the vector-Jacobian products are taken with ``create_graph=True`` so the
    estimate is differentiable w.r.t. the parameters of ``f`` (Jacobian
    regularization, Bai et al. 2021). ``numel`` counts the whole batch, so
    the value is the mean squared Jacobian entry per state element.

    Args:
        f_z (Tensor | Sequence[Tensor]): ``f(z)``, still attached to the graph.
        z (Tensor | Sequence[Tensor]): The input of that call; must require grad.
        n_probes (int): Probe vectors averaged. Default: 1.
        probe (str): ``'rademacher'`` or ``'gaussian'``. Default: 'rademacher'.

    Returns:
        Tensor: Scalar estimate (float32 or float64).
    """
    fs, zs = _as_tuple(f_z), _as_tuple(z)
    if n_probes < 1:
        raise ValueError(f'n_probes must be >= 1, got {n_probes}')
    if probe not in PROBES:
        raise ValueError(f'probe={probe!r} is not valid; choose one of {list(PROBES)}')
    if not all(t.requires_grad for t in zs):
        raise ValueError('z must require grad and f_z must be computed from it')
    numel = sum(t.numel() for t in zs)
    total = 0.0
    for _ in range(n_probes):
        probes = [_probe_like(t, probe) for t in fs]
        vjps = torch.autograd.grad(fs, zs, probes, create_graph=True, allow_unused=True)
        total = total + sum(_accurate(g).pow(2).sum() for g in vjps if g is not None)
    return total / (n_probes * numel)


def spectral_radius(f: Callable[[TensorOrTuple], TensorOrTuple],
                    z: TensorOrTuple,
                    n_iter: int = 100) -> Tensor:
    """Per-sample power-iteration estimate of the spectral radius of ``J_f(z)``.

    Runs block power iteration with two vectors (subspace iteration on
    ``J^T`` through vector-Jacobian products; ``J`` and ``J^T`` share
    eigenvalues) and returns the largest ``|eigenvalue|`` of the 2x2
    Rayleigh-Ritz matrix. Two vectors resolve a dominant complex-conjugate
    pair, common for non-symmetric DEQ Jacobians, where a single-vector
    power iteration only oscillates around the answer. Convergence is
    geometric in ``|lambda_3| / |lambda_2|``. Parameter gradients are not
    touched. For a batch-level number take ``.max()``.

    Args:
        f (Callable): The map; takes and returns the structure of ``z``.
        z (Tensor | Sequence[Tensor]): Point(s) ``(B, ...)`` to linearize at.
        n_iter (int): Block iterations (two VJPs each). Default: 100.

    Returns:
        Tensor: ``(B,)`` estimate per sample (float32 or float64), detached.
    """
    if n_iter < 1:
        raise ValueError(f'n_iter must be >= 1, got {n_iter}')
    zs = tuple(t.detach().requires_grad_() for t in _as_tuple(z))
    with torch.enable_grad():
        fs = _as_tuple(f(zs[0] if isinstance(z, Tensor) else zs))
    packer = StatePacker(zs)

    def vjp_block(q: Tensor) -> Tensor:
        cols = []
        for j in range(q.shape[2]):
            parts = [p.to(t.dtype) for p, t in zip(packer.unpack(q[:, :, j]), fs)]
            grads = torch.autograd.grad(fs, zs, parts, retain_graph=True)
            cols.append(_accurate(packer.pack(grads)))
        return torch.stack(cols, dim=2)

    first = _accurate(fs[0])
    q = torch.randn(first.shape[0], packer.dim, min(2, packer.dim), dtype=first.dtype,
                    device=first.device)
    q = torch.linalg.qr(q).Q
    for _ in range(n_iter):
        q = torch.linalg.qr(vjp_block(q)).Q
    ritz = q.transpose(1, 2) @ vjp_block(q)
    return torch.linalg.eigvals(ritz).abs().max(dim=1).values.to(first.dtype).detach()
