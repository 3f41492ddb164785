import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mdeq_mm.models.layers import MDEQBasicBlock, WeightNormConv2d

GROUPS = 4


def randomize(module):
    """Non-trivial norm affines and weight magnitudes for numerical checks."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith(
                ('gn1.weight', 'gn2.weight', 'gn3.weight', 'weight_g')):
                param.uniform_(0.5, 1.5)
            elif name.endswith('bias'):
                param.normal_(0, 0.1)


def weight_of(conv):
    v, g = conv.weight_v, conv.weight_g
    return g * v / v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


def gn(x, norm):
    return F.group_norm(x, GROUPS, norm.weight, norm.bias)


def functional_block(block, z, injection, mask):
    h = F.relu(gn(F.conv2d(z, weight_of(block.conv1), padding=1), block.gn1))
    h = F.conv2d(h, weight_of(block.conv2), padding=1) * mask + injection
    h = gn(h, block.gn2)
    return gn(F.relu(h + z), block.gn3)


@pytest.mark.parametrize('with_injection', [True, False])
@pytest.mark.parametrize('dropout', [0.0, 0.5])
def test_block_computes_the_same_as_its_functional_form(with_injection, dropout):
    block = MDEQBasicBlock(
        8, expansion=2, num_groups=GROUPS, dropout=dropout).double()
    randomize(block)
    z = torch.randn(3, 8, 6, 5, dtype=torch.float64)
    injection = torch.randn_like(z) if with_injection else None
    block.reset(z)
    mask = block.drop.mask if dropout else 1.0
    expected = functional_block(block, z, injection if with_injection else 0.0,
                                mask)
    torch.testing.assert_close(block(z, injection), expected)


@pytest.mark.parametrize('size', [(8, 8), (7, 5), (1, 3)])
def test_output_shape_equals_input_shape(size):
    block = MDEQBasicBlock(8, expansion=2, num_groups=GROUPS)
    z = torch.randn(2, 8, *size)
    block.reset(z)
    assert block(z, torch.randn_like(z)).shape == z.shape


def test_layer_names_and_types():
    block = MDEQBasicBlock(8, expansion=5, num_groups=GROUPS, dropout=0.1)
    assert isinstance(block.conv1, WeightNormConv2d)
    assert isinstance(block.conv2, WeightNormConv2d)
    assert block.conv1.out_channels == 40
    assert block.conv1.bias is None and block.conv2.bias is None
    assert {block.gn1.num_groups, block.gn2.num_groups} == {GROUPS}
    assert set(block.state_dict()) == {
        'conv1.weight_g', 'conv1.weight_v', 'conv2.weight_g', 'conv2.weight_v',
        'gn1.weight', 'gn1.bias', 'gn2.weight', 'gn2.bias', 'gn3.weight',
        'gn3.bias'
    }


def test_plain_convs_without_weight_norm():
    block = MDEQBasicBlock(
        8, expansion=2, num_groups=GROUPS, weight_norm=False)
    assert type(block.conv1) is nn.Conv2d
    assert 'conv1.weight' in block.state_dict()
    z = torch.randn(1, 8, 4, 4)
    block.reset(z)
    assert block(z).shape == z.shape
