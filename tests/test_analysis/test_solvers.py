"""The solver race runs every contender for the same steps and splits time in and outside f."""
import torch

from mdeq_mm.analysis import CountedF, race
from mdeq_mm.analysis.solvers import torchdeq_available


def contraction(dim=64, batch=2):
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(dim, dim, generator=gen)
    weight *= 0.5 / torch.linalg.matrix_norm(weight, ord=2)
    x = torch.randn(batch, dim, generator=gen)
    return (lambda z: torch.tanh(z @ weight.T + x)), torch.zeros(batch, dim)


def test_counted_f_counts_calls_and_records_residuals():
    f, z0 = contraction()
    counted = CountedF(f, record=True)
    z = counted(counted(z0))
    assert counted.calls == 2 and counted.seconds > 0
    assert len(counted.residuals) == 2 and counted.residuals[0].shape == (2, )
    torch.testing.assert_close(z, f(f(z0)))


def test_race_reports_overhead_within_the_wall_time_and_falling_residuals():
    f, z0 = contraction()
    result = race(f, z0, steps=8, rounds=2)
    expected = {'ours/broyden', 'ours/anderson'}
    if torchdeq_available():
        expected |= {'torchdeq/broyden', 'torchdeq/anderson'}
        assert 'broyden/overhead_ours_over_torchdeq' in result
    solvers = {k: v for k, v in result.items() if '/overhead_' not in k}
    assert set(solvers) == expected
    for name, entry in solvers.items():
        assert 8 <= entry['nfe'] <= 9, name
        assert len(entry['wall_s']) == 2 and 0 <= entry['overhead_fraction'] < 1
        assert entry['curve'][-1] < 0.1 * entry['curve'][0], name
