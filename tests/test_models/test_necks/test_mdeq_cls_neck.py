import pytest
import torch
from mmengine.registry import MODELS, DefaultScope

from mdeq_mm.models.necks import MDEQClsNeck

IN_CHANNELS = (8, 16, 8, 16)
HEAD_CHANNELS = (4, 8, 8, 16)


def branch_feats(num_branches, batch=2, size=16):
    return tuple(
        torch.rand(batch, c, size >> i, size >> i)
        for i, c in enumerate(IN_CHANNELS[:num_branches]))


@pytest.mark.parametrize('num_branches', [1, 2, 3, 4])
def test_any_number_of_branches_fuses_to_one_vector_per_image(num_branches):
    neck = MDEQClsNeck(
        IN_CHANNELS[:num_branches],
        HEAD_CHANNELS[:num_branches],
        final_channels=32)
    out = neck(branch_feats(num_branches))
    assert isinstance(out, tuple) and len(out) == 1
    assert out[0].shape == (2, 32)


def test_odd_feature_map_sizes_are_fused():
    neck = MDEQClsNeck(IN_CHANNELS[:3], HEAD_CHANNELS[:3], final_channels=8)
    feats = (torch.rand(2, 8, 9, 7), torch.rand(2, 16, 5,
                                                4), torch.rand(2, 8, 3, 2))
    assert neck(feats)[0].shape == (2, 8)


def test_in_and_head_channels_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match=r'\(8, 16\).*\(4, 8, 8\)'):
        MDEQClsNeck((8, 16), (4, 8, 8))


def test_wrong_number_of_inputs_raises():
    neck = MDEQClsNeck((8, 16), (4, 8), final_channels=8)
    with pytest.raises(ValueError, match='expects 2 branches, got 3'):
        neck(branch_feats(3))


def test_state_dict_uses_the_authors_key_names():
    keys = set(MDEQClsNeck((8, 16), (4, 4), final_channels=8).state_dict())
    for key in ('incre_modules.0.0.conv1.weight',
                'incre_modules.0.0.bn3.running_var',
                'incre_modules.0.0.downsample.0.weight',
                'downsamp_modules.0.0.bias', 'downsamp_modules.0.1.weight',
                'final_layer.0.bias', 'final_layer.1.running_mean'):
        assert key in keys
    # Branch 1 already has 4 * 4 channels: no shortcut projection.
    assert not any(k.startswith('incre_modules.1.0.downsample') for k in keys)


def test_builds_from_registry_under_mmpretrain_scope():
    cfg = dict(
        type='MDEQClsNeck',
        in_channels=(8, 16),
        head_channels=(4, 8),
        final_channels=16)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        neck = MODELS.build(cfg)
        head = MODELS.build(
            dict(type='LinearClsHead', num_classes=3, in_channels=16))
    assert isinstance(neck, MDEQClsNeck)
    neck.init_weights()
    assert head(neck(branch_feats(2))).shape == (2, 3)


def test_every_branch_reaches_the_output():
    torch.manual_seed(0)
    neck = MDEQClsNeck(IN_CHANNELS, HEAD_CHANNELS, final_channels=16).eval()
    feats = branch_feats(4)
    reference = neck(feats)[0]
    for i in range(4):
        perturbed = list(feats)
        perturbed[i] = perturbed[i] + 1.0
        assert not torch.allclose(neck(tuple(perturbed))[0], reference)
