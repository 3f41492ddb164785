import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mdeq_mm.deq import BroydenSolver, DEQCore, solve
from mdeq_mm.deq.broyden import DEFAULT_MEMORY

from .problems import DTYPE, linear_problem, recording


def test_first_step_is_f_of_z0():
    f, z_star = linear_problem(batch=2, dim=5)
    recording_f, inputs = recording(f)

    z0 = torch.randn_like(z_star)
    solve(recording_f, z0, solver='broyden', max_iter=2, tol=0.0)
    assert torch.allclose(inputs[1], f(z0), atol=1e-14, rtol=0)


def test_update_satisfies_the_secant_condition():
    f, z_star = linear_problem(batch=2, dim=5)
    z0 = torch.zeros_like(z_star)
    active = torch.ones(2, dtype=torch.bool)
    solver = BroydenSolver(z0, max_iter=10, memory=4)
    f0 = f(z0)
    z1 = solver.propose(z0, f0, f0 - z0, active)
    f1 = f(z1)
    solver.propose(z1, f1, f1 - z1, active)
    s, y = z1 - z0, (f1 - z1) - (f0 - z0)
    # the inverse-Jacobian estimate of g = f - z maps the change in g onto the step
    assert torch.allclose(solver._apply(y), s, atol=1e-12, rtol=0)


def test_full_memory_solves_a_linear_problem_within_2d_steps():
    dim = 8
    f, z_star = linear_problem(batch=2, dim=dim)
    z, stats = solve(f, torch.zeros_like(z_star), solver='broyden', max_iter=100, memory=100,
                     tol=1e-11, check_every=1)
    assert stats.nfe <= 2 * dim + 1
    assert torch.allclose(z, z_star, atol=1e-9, rtol=0)


def dense_broyden_iterates(f, z0, steps, memory):
    """Iterates of good Broyden with an explicit ``(B, D, D)`` inverse Jacobian.

    After ``memory`` updates it restarts from ``-I`` and applies the newest pair.
    """
    batch, dim = z0.shape
    eye = torch.eye(dim, dtype=z0.dtype).expand(batch, dim, dim)
    h, updates = -eye, 0
    z, g_prev, z_prev = z0, None, None
    iterates = [z0]
    for _ in range(steps - 1):
        g = f(z) - z
        if g_prev is not None:
            if updates == memory:
                h, updates = -eye, 0
            s, y = z - z_prev, g - g_prev
            h_y = torch.einsum('bij,bj->bi', h, y)
            s_h = torch.einsum('bi,bij->bj', s, h)
            h = h + torch.einsum('bi,bj->bij', s - h_y, s_h) / (s_h * y).sum(1)[:, None, None]
            updates += 1
        z_prev, g_prev = z, g
        z = z - torch.einsum('bij,bj->bi', h, g)
        iterates.append(z)
    return torch.stack(iterates)


def recorded_iterates(f, z0, steps, memory):
    recording_f, inputs = recording(f)

    solve(recording_f, z0, solver='broyden', max_iter=steps, memory=memory, tol=0.0)
    return torch.stack(inputs)


def assert_iterates_match_dense_broyden(steps, memory):
    f, z_star = linear_problem(batch=2, dim=12)
    z0 = torch.zeros_like(z_star)
    ours = recorded_iterates(f, z0, steps=steps, memory=memory)
    dense = dense_broyden_iterates(f, z0, steps=steps, memory=memory)
    assert torch.allclose(ours, dense, rtol=1e-9, atol=1e-9)


def test_iterates_match_a_dense_good_broyden():
    assert_iterates_match_dense_broyden(steps=10, memory=10)


def test_full_history_restarts_from_minus_identity_with_the_newest_pair():
    assert_iterates_match_dense_broyden(steps=14, memory=4)


def test_capped_memory_is_allocated_once_and_still_converges():
    f, z_star = linear_problem(batch=2, dim=12, radius=0.8)
    z0 = torch.zeros_like(z_star)
    solver = BroydenSolver(z0, max_iter=50, memory=3)
    assert solver.us.shape == (2, 3, 12) and solver.vs.shape == (2, 3, 12)
    pointer = solver.us.data_ptr()
    active = torch.ones(2, dtype=torch.bool)
    z = z0
    for _ in range(8):
        fz = f(z)
        z = solver.propose(z, fz, fz - z, active)
    assert solver.us.data_ptr() == pointer
    z, stats = solve(f, z0, solver='broyden', memory=3, max_iter=300, tol=1e-9)
    assert bool(stats.converged.all())
    assert torch.allclose(z, z_star, atol=1e-7, rtol=0)


def test_default_memory_is_capped_and_keeps_converging_after_restarts():
    f, z_star = linear_problem(batch=3, dim=16)
    z0 = torch.zeros_like(z_star)
    assert BroydenSolver(z0, max_iter=40).us.shape[1] == DEFAULT_MEMORY
    assert BroydenSolver(z0, max_iter=4).us.shape[1] == 4
    _, stats = solve(f, z0, solver='broyden', max_iter=4 * DEFAULT_MEMORY, tol=0.0)
    # the history restarted three times; the residual keeps falling across restarts
    best = stats.rel_trace.max(dim=1).values.cummin(dim=0).values
    assert float(best[-1]) < 1e-6
    assert float(best[-1]) < 1e-2 * float(best[2 * DEFAULT_MEMORY])


class LiveBytes(TorchDispatchMode):
    """Peak bytes of the tensor storages created (and not yet freed) under the mode."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self.seen = set()

    def _free(self, nbytes):
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr() for a in args if isinstance(a, torch.Tensor)}
        for t in out if isinstance(out, (tuple, list)) else (out, ):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if storage.nbytes() == 0 or key in inputs or key in self.seen:
                continue
            self.seen.add(key)
            nbytes = storage.nbytes()
            weakref.finalize(storage, self._discard, key, nbytes)
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        return out

    def _discard(self, key, nbytes):
        self.seen.discard(key)
        self._free(nbytes)


def implicit_training_peak(steps):
    gen = torch.Generator().manual_seed(0)
    weight = torch.nn.Parameter(0.5 * torch.rand(4096, generator=gen))
    x = torch.randn(2, 4096, generator=gen)
    core = DEQCore(dict(type='broyden', max_iter=steps, tol=0.0),
                   dict(type='implicit', max_iter=steps, tol=0.0)).train()
    with LiveBytes() as probe:
        (z, ) = core(lambda zs: (torch.tanh(zs[0] * weight + x), ), (torch.zeros(2, 4096), ))
        z.sum().backward()
    assert core.last_forward_stats.nfe == steps and core.last_backward_stats.nfe == steps
    return probe.peak


def test_default_memory_keeps_implicit_training_peak_flat_from_10_to_40_steps():
    assert implicit_training_peak(40) <= 1.05 * implicit_training_peak(10)


def test_degenerate_update_is_skipped_and_counted():
    # a constant residual gives y = 0 after the first step: no curvature information
    z, stats = solve(lambda z: z + 1.0, torch.zeros(2, 3, dtype=DTYPE), solver='broyden',
                     max_iter=4, tol=1e-9)
    assert int(stats.degenerate) == 2 * 2
    assert bool(torch.isfinite(z).all())
