import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from mdeq_mm.models.layers import MDEQModule, WeightNormConv2d

GROUPS = 4


def small_module(num_branches=3, **kwargs):
    channels = (8, 16, 8, 16)[:num_branches]
    return MDEQModule(channels, expansion=2, num_groups=GROUPS, **kwargs)


def branch_states(module, batch=2, first=(9, 7)):
    states, (h, w) = [], first
    for c in module.num_channels:
        states.append(torch.randn(batch, c, h, w))
        h, w = (h + 1) // 2, (w + 1) // 2
    return tuple(states)


def expected_num_params(channels, expansion):
    """Count of f's parameters derived from the architecture description."""
    total = 0
    for c in channels:
        hidden = expansion * c
        total += 2 * (9 * c * hidden) + hidden + c  # conv1/conv2 v and g
        total += 2 * hidden + 4 * c  # gn1, gn2, gn3
        total += c * c + c + 2 * c  # post-fusion conv1x1 (v, g) and GN
    for i, c_i in enumerate(channels):
        for j, c_j in enumerate(channels):
            if j > i:
                total += c_j * c_i + 2 * c_i
            elif j < i:
                total += (i - j - 1) * (9 * c_j * c_j + 2 * c_j)
                total += 9 * c_j * c_i + 2 * c_i
    return total


def test_no_batch_norm_inside():
    module = small_module(4)
    assert not any(isinstance(m, _BatchNorm) for m in module.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in module.modules())


def test_parameter_count_of_mdeq_small():
    module = MDEQModule((32, 64, 128, 256), expansion=5, num_groups=8)
    num_params = sum(p.numel() for p in module.parameters())
    assert num_params == expected_num_params((32, 64, 128, 256), 5)
    # The spec's ~8M for MDEQ-small's f, within its stated +-10%.
    assert 7.2e6 < num_params < 8.8e6


@pytest.mark.parametrize('num_branches', [1, 2, 3, 4])
def test_output_shapes(num_branches):
    module = small_module(num_branches, dropout=0.2)
    z = branch_states(module)
    injection = (torch.randn_like(z[0]), ) + (None, ) * (num_branches - 1)
    module.reset(z)
    out = module(z, injection)
    assert isinstance(out, tuple)
    assert [o.shape for o in out] == [s.shape for s in z]
    assert [o.shape for o in module(z)] == [s.shape for s in z]


def test_reset_fixes_weights_and_masks_for_all_calls(monkeypatch):
    calls = []
    compute = WeightNormConv2d.compute_weight
    monkeypatch.setattr(WeightNormConv2d, 'compute_weight',
                        lambda self: calls.append(self) or compute(self))
    torch.manual_seed(0)
    module = small_module(3, dropout=0.5)
    z = branch_states(module)
    module.reset(z)
    assert len(calls) == 3 * 3  # conv1, conv2, post-fusion conv per branch
    first = module(z, z)
    for a, b in zip(first, module(z, z)):
        torch.testing.assert_close(a, b)
    assert len(calls) == 9
    module.reset(z)
    assert any(not torch.equal(a, b) for a, b in zip(first, module(z, z)))


def test_every_parameter_gets_a_gradient():
    module = small_module(3)
    z = branch_states(module)
    module.reset(z)
    sum(o.square().sum() for o in module(z, z)).backward()
    missing = [n for n, p in module.named_parameters() if p.grad is None]
    assert not missing


def test_state_dict_layout():
    keys = set(small_module(2).state_dict())
    for key in ('branches.0.blocks.0.conv1.weight_v',
                'branches.1.blocks.0.conv2.weight_g',
                'branches.1.blocks.0.gn3.bias',
                'fuse_layers.0.1.net.conv.weight',
                'fuse_layers.0.1.net.gnorm.weight',
                'fuse_layers.1.0.net.0.conv.weight',
                'post_fuse_layers.1.conv.weight_g',
                'post_fuse_layers.0.gnorm.weight'):
        assert key in keys
    no_affine = set(small_module(2, post_gn_affine=False).state_dict())
    assert 'post_fuse_layers.0.gnorm.weight' not in no_affine
    plain = set(small_module(2, weight_norm=False).state_dict())
    assert 'branches.0.blocks.0.conv1.weight' in plain
    assert 'post_fuse_layers.0.conv.weight' in plain


@pytest.mark.parametrize('kwargs,match', [
    (dict(num_channels=()), 'at least one branch'),
    (dict(num_channels=(8, 10)), r'num_channels\[1\]=10'),
    (dict(num_channels=(6, 12), num_groups=3), 'num_groups.*got 3'),
    (dict(num_channels=(8, ), expansion=0), 'expansion'),
])
def test_bad_configuration_raises(kwargs, match):
    args = dict(num_groups=GROUPS, expansion=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        MDEQModule(**args)


def test_wrong_number_of_inputs_raises():
    module = small_module(2)
    z = branch_states(module)
    with pytest.raises(ValueError, match='refs has 1 entries'):
        module.reset(z[:1])
    module.reset(z)
    with pytest.raises(ValueError, match='z has 1 entries'):
        module(z[:1])
    with pytest.raises(ValueError, match='injection has 3 entries'):
        module(z, (None, None, None))
