"""MDEQInitializer: the learned start state of the MDEQ solve, and its training losses."""
import pytest
import torch

from mdeq_mm.deq import SolverConfig
from mdeq_mm.models import MDEQ
from mdeq_mm.models.layers import MDEQInitializer

TINY = dict(num_channels=(8, 16), expansion=2)
SOLVER = dict(type='broyden', max_iter=30, tol=1e-3)


def tiny_mdeq(initializer=dict(type='MDEQInitializer'), seed=0):
    torch.manual_seed(seed)
    model = MDEQ(arch=TINY, forward_solver=SOLVER, initializer=initializer)
    model.init_weights()
    return model.eval()


@pytest.mark.parametrize('initializer', [
    dict(type='MDEQInitializer'),
    dict(type='MDEQInitializer', norm_groups=None),  # zero output convolutions instead
])
def test_untrained_initializer_is_the_cold_start(initializer):
    plain, learned = tiny_mdeq(initializer=None), tiny_mdeq(initializer)
    learned.load_state_dict(plain.state_dict(), strict=False)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert all(bool((z == 0).all()) for z in learned.fixed_point_problem(x).z0)
        for a, b in zip(plain(x), learned(x)):
            torch.testing.assert_close(a, b)
    assert plain.last_forward_stats.steps.tolist() == learned.last_forward_stats.steps.tolist()


def test_outputs_are_normalized_as_the_last_group_norm_of_f_unless_told_otherwise():
    model = tiny_mdeq()
    groups = model.f.post_fuse_layers[0].gnorm.num_groups
    assert [norm.num_groups for norm in model.initializer.norms] == [groups, groups]
    given = tiny_mdeq(dict(type='MDEQInitializer', norm_groups=2))
    assert given.initializer.norms[0].num_groups == 2
    assert tiny_mdeq(dict(type='MDEQInitializer', norm_groups=None)).initializer.norms is None


def test_initializer_is_in_the_state_dict_and_loads_strictly():
    model = tiny_mdeq()
    keys = [k for k in model.state_dict() if k.startswith('initializer.')]
    assert keys
    tiny_mdeq(seed=1).load_state_dict(model.state_dict(), strict=True)
    with pytest.raises(RuntimeError, match='initializer'):
        tiny_mdeq(initializer=None).load_state_dict(model.state_dict(), strict=True)


@torch.no_grad()
def test_solve_starts_from_the_learned_state():
    model = tiny_mdeq(initializer=dict(type='MDEQInitializer', target_solver=dict(tol=0.0)))
    x = torch.rand(2, 3, 32, 32)
    model.initializer.fitting = True
    z_star = model(x)
    model.initializer.fitting = False
    # the residual the target solve reached, with room for rounding when f(z*) is recomputed
    reached = float(model.initializer.last_target_stats.rel_res.max())
    model.deq.forward_cfg = SolverConfig(type='broyden', max_iter=30, tol=1.5 * reached)
    model.initializer.forward = lambda injection: z_star
    model(x)
    assert model.last_forward_stats.steps.tolist() == [1, 1]
    # an image given an all-zero state (e.g. a video stream without one) starts learned too
    given = tuple(torch.cat([torch.zeros_like(z[:1]), 2 * z[1:]]) for z in z_star)
    z0 = model.fixed_point_problem(x, init_state=given).z0
    for start, target, state in zip(z0, z_star, given):
        torch.testing.assert_close(start[0], target[0])
        torch.testing.assert_close(start[1], state[1])


def test_fitting_lowers_the_distance_to_the_equilibrium_and_trains_only_the_initializer():
    model = tiny_mdeq()
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith('initializer.'))
    model.initializer.fitting = True
    optimizer = torch.optim.Adam(model.initializer.parameters(), lr=3e-2)
    x = torch.rand(4, 3, 32, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    distances = []
    for _ in range(25):
        model(x)
        losses = model.initializer.last_losses
        distances.append(float(losses['loss_init_dist']))
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    assert distances[0] == pytest.approx(1.0, abs=1e-3)  # zeros: ||0 - z*|| / ||z*||
    assert distances[-1] < 0.95 * distances[0]
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith('initializer.') for k in changed)


def test_bad_settings_name_the_value():
    with pytest.raises(ValueError, match='hidden_channels'):
        MDEQInitializer(num_channels=(8, 16), hidden_channels=0)
    with pytest.raises(ValueError, match='distance_weight'):
        MDEQInitializer(num_channels=(8, 16), distance_weight=-1.0)
    with pytest.raises(ValueError, match='tol'):
        MDEQInitializer(num_channels=(8, 16), target_solver=dict(tol=-1.0))
    for groups in (3, 0, '4'):
        with pytest.raises(ValueError, match=rf"norm_groups .*\(8, 16\), got {groups!r}"):
            MDEQInitializer(num_channels=(8, 16), norm_groups=groups)
    with pytest.raises(ValueError, match=r'\(B, 8, H, W\)'):
        MDEQInitializer(num_channels=(8, 16))(torch.rand(1, 4, 8, 8))
