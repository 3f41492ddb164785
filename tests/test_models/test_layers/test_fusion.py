import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mdeq_mm.models.layers import WeightNormConv2d
from mdeq_mm.models.layers.fusion import build_fuse_layers, build_post_fuse_layers, fuse_branches

GROUPS = 4
CHANNELS = (8, 16, 8, 16)


def branch_sizes(first, n):
    """Each branch is half the previous one, rounded up."""
    sizes = [first]
    for _ in range(n - 1):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def build(channels):
    return (build_fuse_layers(channels, GROUPS),
            build_post_fuse_layers(channels, GROUPS))


@pytest.mark.parametrize('num_branches', [1, 2, 3, 4])
@pytest.mark.parametrize('first_size', [(16, 16), (9, 7)])
def test_output_shapes(num_branches, first_size):
    channels = CHANNELS[:num_branches]
    fuse_layers, post_fuse_layers = build(channels)
    feats = [
        torch.randn(2, c, *size)
        for c, size in zip(channels, branch_sizes(first_size, num_branches))
    ]
    outs = fuse_branches(feats, fuse_layers, post_fuse_layers)
    assert isinstance(outs, tuple)
    assert [o.shape for o in outs] == [f.shape for f in feats]


def test_layer_layout_follows_authors_names():
    fuse_layers, post_fuse_layers = build(CHANNELS[:3])
    assert isinstance(fuse_layers[1][1], nn.Identity)
    up = fuse_layers[0][2].net
    assert list(up._modules) == ['conv', 'gnorm']
    assert up.conv.kernel_size == (1, 1) and up.conv.out_channels == 8
    down = fuse_layers[2][0].net
    assert list(down[0]._modules) == ['conv', 'gnorm', 'relu']
    assert list(down[1]._modules) == ['conv', 'gnorm']
    assert down[0].conv.out_channels == 8 and down[1].conv.out_channels == 8
    assert fuse_layers[1][0].net[0].conv.stride == (2, 2)
    assert fuse_layers[1][0].net[0].conv.out_channels == 16
    post = post_fuse_layers[1]
    assert list(post._modules) == ['relu', 'conv', 'gnorm']
    assert isinstance(post.conv, WeightNormConv2d)
    assert post.gnorm.num_groups == GROUPS // 2


def test_matches_functional_version_for_three_branches():
    torch.manual_seed(0)
    channels = (8, 16, 8)
    fuse_layers, post_fuse_layers = build(channels)
    fuse_layers.double()
    post_fuse_layers.double()
    feats = [
        torch.randn(2, c, *s, dtype=torch.float64)
        for c, s in zip(channels, branch_sizes((8, 4), 3))
    ]
    b0, b1, b2 = feats

    def gn(x, norm, groups=GROUPS):
        return F.group_norm(x, groups, norm.weight, norm.bias)

    def up(j, i):
        net = fuse_layers[i][j].net
        y = gn(F.conv2d(feats[j], net.conv.weight), net.gnorm)
        return F.interpolate(y, scale_factor=2**(j - i), mode='nearest')

    def down_stage(x, stage):
        return gn(
            F.conv2d(x, stage.conv.weight, stride=2, padding=1), stage.gnorm)

    def post(i, u):
        layer = post_fuse_layers[i]
        v, g = layer.conv.weight_v, layer.conv.weight_g
        w = g * v / v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        return gn(F.conv2d(F.relu(u), w), layer.gnorm, GROUPS // 2)

    net10, net20, net21 = (fuse_layers[1][0].net, fuse_layers[2][0].net,
                           fuse_layers[2][1].net)
    expected = [
        post(0, b0 + up(1, 0) + up(2, 0)),
        post(1, b1 + down_stage(b0, net10[0]) + up(2, 1)),
        post(
            2, b2 + down_stage(F.relu(down_stage(b0, net20[0])), net20[1]) +
            down_stage(b1, net21[0])),
    ]
    outs = fuse_branches(feats, fuse_layers, post_fuse_layers)
    for out, exp in zip(outs, expected):
        torch.testing.assert_close(out, exp)


def test_inconsistent_branch_sizes_raise():
    fuse_layers, post_fuse_layers = build(CHANNELS[:2])
    feats = [torch.randn(1, 8, 8, 8), torch.randn(1, 16, 3, 3)]
    with pytest.raises(ValueError, match='rounded up'):
        fuse_branches(feats, fuse_layers, post_fuse_layers)


def test_post_fuse_norm_without_affine():
    post = build_post_fuse_layers((8, ), GROUPS, affine=False)
    assert set(post.state_dict()) == {'0.conv.weight_g', '0.conv.weight_v'}
