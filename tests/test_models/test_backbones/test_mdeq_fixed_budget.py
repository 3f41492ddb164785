"""The MDEQ backbone's eval_fixed_budget mode: the usual evaluation output at a fixed cost."""
import pytest
import torch

from mdeq_mm.models import MDEQ

TINY = dict(num_channels=(8, 16), expansion=2)


def tiny_mdeq(solver, **kwargs):
    torch.manual_seed(0)
    return MDEQ(arch=TINY, forward_solver=dict(type=solver, max_iter=6, tol=1e-2),
                eval_max_iter=5, **kwargs).double().eval()


@pytest.mark.parametrize('solver', ['broyden', 'anderson', 'fixed_point'])
def test_fixed_budget_evaluation_gives_the_usual_output_and_spends_the_whole_budget(solver):
    model = tiny_mdeq(solver)
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        usual = model(x)
        model.eval_fixed_budget = True
        fixed = model(x)
    for a, b in zip(fixed, usual):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
    assert model.last_forward_stats.nfe == 5


def test_config_switch_reaches_the_solver_and_training_ignores_it():
    model = tiny_mdeq('broyden', eval_fixed_budget=True)
    assert model.eval_fixed_budget and model.deq.eval_fixed_budget
    model.train()
    model(torch.rand(2, 3, 32, 32, dtype=torch.float64))
    assert model.last_forward_stats.nfe <= 6


def test_nonfinite_image_is_zeroed_and_flagged_without_a_host_branch():
    model = tiny_mdeq('broyden', eval_fixed_budget=True)
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    x[0, 0, 0, 0] = float('nan')
    with torch.no_grad():
        outs = model(x)
        zeros = model(torch.cat([torch.zeros_like(x[:1]), x[1:]]))
    assert model.last_failed is not None
    assert torch.allclose(outs[0], zeros[0], rtol=1e-9, atol=1e-12)
    model(x)
    assert model.last_failed.tolist() == [True, False]


def test_fixed_budget_evaluation_refuses_a_warm_start_and_non_bool_switches():
    model = tiny_mdeq('broyden', eval_fixed_budget=True)
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    state = tuple(torch.zeros_like(z) for z in model(x))
    with pytest.raises(ValueError, match='init_state.*eval_fixed_budget=True'):
        model(x, state)
    with pytest.raises(ValueError, match="eval_fixed_budget must be a bool, got 'yes'"):
        model.eval_fixed_budget = 'yes'
