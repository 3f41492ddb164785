"""An error raised while solving names the config key of the solve: forward_solver, backward or
fallback."""
import pytest
import torch

from mdeq_mm.deq import DEQCore, SolveError, solve

SHAPE = (2, 3, 2, 2)


class Boom(RuntimeError):
    """What ``f`` raises in these tests."""


def test_named_solve_reraises_with_its_name_solver_and_budget():

    def f(z):
        raise Boom('inside f')

    with pytest.raises(SolveError) as err:
        solve(f, torch.zeros(2, 3), solver='anderson', max_iter=5, name='backward')
    assert str(err.value) == 'backward (anderson solver, max_iter=5): Boom: inside f'
    assert isinstance(err.value.__cause__, Boom)
    with pytest.raises(Boom):
        solve(f, torch.zeros(2, 3), max_iter=5)  # unnamed: as raised


def test_memory_errors_keep_their_type():

    def f(z):
        raise torch.cuda.OutOfMemoryError('no memory')

    with pytest.raises(torch.cuda.OutOfMemoryError) as err:
        solve(f, torch.zeros(2, 3), max_iter=5, name='forward_solver')
    if hasattr(err.value, 'add_note'):
        assert 'forward_solver (broyden solver, max_iter=5)' in err.value.__notes__[0]


def core(**fallback):
    return DEQCore(dict(type='broyden', max_iter=4, tol=1e-6, check_every=1),
                   dict(type='implicit', solver='broyden', max_iter=4),
                   fallback or None, n_layers=2)


def test_error_in_the_forward_solve_names_forward_solver():

    def f(z):
        raise Boom('shape mismatch in f')

    with pytest.raises(SolveError, match=r'^forward_solver \(broyden solver, max_iter=4\): '
                       r'Boom: shape mismatch in f$'):
        core().eval()(f, (torch.zeros(SHAPE), ))


def test_error_in_the_fallback_solve_names_fallback():
    calls = []

    def f(z):
        calls.append(1)
        if len(calls) == 1:  # the forward solve fails at once: NaN
            return tuple(torch.full_like(t, float('nan')) for t in z)
        raise Boom('inside the re-solve')

    with pytest.raises(SolveError, match=r'^fallback \(fixed_point solver, max_iter=3\): Boom'):
        core(type='fixed_point', max_iter=3).eval()(f, (torch.zeros(SHAPE), ))
    assert len(calls) == 2


class FailingBackward(torch.autograd.Function):
    """Identity whose backward raises: a vector-Jacobian product that fails."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise Boom('inside the vector-Jacobian product')


def test_error_in_the_implicit_backward_solve_names_backward():
    x = torch.randn(SHAPE, requires_grad=True)

    def f(z):
        return (FailingBackward.apply(0.5 * torch.tanh(z[0]) + x), )

    deq = core().train()
    (out, ) = deq(f, (torch.zeros(SHAPE), ))
    with pytest.raises(SolveError, match=r'^backward \(broyden solver, max_iter=4\): Boom'):
        out.sum().backward()
