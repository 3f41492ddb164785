import math

import pytest
import torch
from torch import nn

from mdeq_mm.deq import jacobian_frobenius_reg, spectral_radius

from .problems import DTYPE


class TupleMap(nn.Module):
    """``f(z1, z2) = tanh(W [z1; z2] + c)`` on a (B, 2, 2) and a (B, 3) tensor."""

    def __init__(self, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(7, 7, generator=gen, dtype=DTYPE) / 2)
        self.bias = torch.randn(7, generator=gen, dtype=DTYPE) / 2

    def flat(self, v):
        return torch.tanh(v @ self.weight.T + self.bias)

    def forward(self, z):
        out = self.flat(torch.cat([z[0].flatten(1), z[1]], dim=1))
        return out[:, :4].view(-1, 2, 2), out[:, 4:]

    def exact_reg(self, batch_flat, create_graph=False):
        """``||J||_F^2 / numel`` from the full Jacobian of the batched map."""
        jac = torch.autograd.functional.jacobian(self.flat, batch_flat, create_graph=create_graph)
        return jac.pow(2).sum() / batch_flat.numel()


def state(batch=2, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 2, 2, generator=gen, dtype=DTYPE).requires_grad_(),
            torch.randn(batch, 3, generator=gen, dtype=DTYPE).requires_grad_())


@pytest.mark.parametrize('probe', ['rademacher', 'gaussian'])
def test_hutchinson_matches_the_exact_frobenius_norm_within_its_error(probe):
    f, z = TupleMap(), state()
    fz = f(z)
    exact = float(f.exact_reg(torch.cat([z[0].flatten(1), z[1]], dim=1).detach()))
    n = 1000
    torch.manual_seed(0)
    samples = torch.stack([jacobian_frobenius_reg(fz, z, probe=probe).detach() for _ in range(n)])
    stderr = float(samples.std()) / math.sqrt(n)
    assert abs(float(samples.mean()) - exact) < 4 * stderr
    assert stderr < 0.05 * exact
    torch.manual_seed(0)
    batched = jacobian_frobenius_reg(fz, z, n_probes=n, probe=probe)
    assert abs(batched.item() - float(samples.mean())) < 1e-12


def test_hutchinson_gradient_wrt_params_matches_the_exact_one_on_average():
    f, z = TupleMap(), state()
    torch.manual_seed(0)
    est = jacobian_frobenius_reg(f(z), z, n_probes=2000)
    assert est.requires_grad
    (grad_est, ) = torch.autograd.grad(est, [f.weight])
    flat = torch.cat([z[0].flatten(1), z[1]], dim=1).detach()
    (grad_exact, ) = torch.autograd.grad(f.exact_reg(flat, create_graph=True), [f.weight])
    assert float((grad_est - grad_exact).norm() / grad_exact.norm()) < 0.1


def test_hutchinson_rejects_a_state_without_grad():
    z = torch.randn(2, 3)
    with pytest.raises(ValueError, match='require grad'):
        jacobian_frobenius_reg(torch.tanh(z), z)


def test_spectral_radius_matches_the_largest_absolute_eigenvalue():
    gen = torch.Generator().manual_seed(0)
    eigs = torch.tensor([[-0.9, 0.5, 0.3, -0.2, 0.1], [0.7, -0.4, 0.2, 0.1, 0.05]], dtype=DTYPE)
    basis = torch.eye(5, dtype=DTYPE) + 0.3 * torch.randn(2, 5, 5, generator=gen, dtype=DTYPE)
    a = basis @ torch.diag_embed(eigs) @ torch.linalg.inv(basis)
    rho = spectral_radius(lambda z: torch.einsum('bij,bj->bi', a, z) + 1.0,
                          torch.randn(2, 5, dtype=DTYPE), n_iter=100)
    expected = torch.linalg.eigvals(a).abs().max(dim=1).values
    assert rho.shape == (2, )
    assert torch.allclose(rho, expected, rtol=1e-6, atol=0)


def test_spectral_radius_resolves_a_complex_pair_on_a_tuple_state_without_param_grads():
    f, z = TupleMap(), state()
    rho = spectral_radius(f, tuple(t.detach() for t in z), n_iter=100)
    flat = torch.cat([z[0].flatten(1), z[1]], dim=1).detach()
    eigs = [torch.linalg.eigvals(torch.autograd.functional.jacobian(f.flat, flat[b:b + 1])
                                 .reshape(7, 7)) for b in range(2)]
    dominant = eigs[0][eigs[0].abs().argmax()]
    assert abs(float(dominant.imag)) > 0.1  # sample 0 has a dominant complex pair
    for b in range(2):
        assert abs(float(rho[b]) - float(eigs[b].abs().max())) < 1e-8
    assert f.weight.grad is None and not rho.requires_grad
