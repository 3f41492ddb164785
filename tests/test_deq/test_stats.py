import torch

from mdeq_mm.deq import SolverStats


def _stats(stop_mode='rel'):
    return SolverStats(
        steps=torch.tensor([3, 5]),
        best_step=torch.tensor([2, 4]),
        abs_res=torch.tensor([1e-4, 1e-1]),
        rel_res=torch.tensor([1e-2, 1e-5]),
        abs_trace=torch.rand(5, 2),
        rel_trace=torch.rand(5, 2),
        nan=torch.tensor([False, True]),
        diverged=torch.tensor([False, False]),
        stalled=torch.tensor([False, False]),
        nfe=5,
        tol=1e-3,
        stop_mode=stop_mode,
        degenerate=torch.tensor(2))


def test_converged_uses_the_stop_mode_residual():
    assert _stats('rel').converged.tolist() == [False, True]
    assert _stats('abs').converged.tolist() == [True, False]
    assert _stats().failed.tolist() == [False, True]


def test_to_dict_gives_batch_means_as_python_floats():
    logged = _stats().to_dict()
    assert all(isinstance(v, float) for v in logged.values())
    assert logged['steps'] == 4.0
    assert logged['nan'] == 0.5
    assert logged['converged'] == 0.5
    assert logged['nfe'] == 5.0
    assert logged['degenerate'] == 2.0
    assert abs(logged['rel_res'] - 0.5 * (1e-2 + 1e-5)) < 1e-9
