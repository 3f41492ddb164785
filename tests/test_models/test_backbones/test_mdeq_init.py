"""MDEQ's default initialization: plain convs small, weight-normalized convs untouched."""
import pytest
import torch
import torch.nn as nn

from mdeq_mm.models import MDEQ
from mdeq_mm.models.layers.weight_norm_conv import WeightNormConv2d
from mdeq_mm.models.necks import MDEQClsNeck


def plain_convs(module: nn.Module):
    return [m for m in module.modules()
            if isinstance(m, nn.Conv2d) and not isinstance(m, WeightNormConv2d)]


def test_default_init_draws_every_plain_conv_from_a_small_normal():
    torch.manual_seed(0)
    model = MDEQ(arch='small')
    model.init_weights()
    weights = torch.cat([m.weight.flatten() for m in plain_convs(model)])
    assert len(plain_convs(model.stem)) == 2 and plain_convs(model.f.fuse_layers)
    assert abs(weights.std().item() - 0.01) < 0.001
    assert abs(weights.mean().item()) < 0.001


def test_default_init_leaves_weight_normalized_convs_as_built():
    torch.manual_seed(0)
    model = MDEQ(arch=dict(num_channels=(8, 16), expansion=2))
    before = {k: v.clone() for k, v in model.state_dict().items() if 'weight_g' in k or
              'weight_v' in k}
    model.init_weights()
    after = model.state_dict()
    assert before and all(torch.equal(v, after[k]) for k, v in before.items())


def test_init_cfg_none_keeps_pytorch_defaults():
    torch.manual_seed(0)
    model = MDEQ(arch='small', init_cfg=None)
    model.init_weights()
    # PyTorch's default for the first stem conv (fan_in 27) has std 1/sqrt(3 * 27) ~ 0.11
    assert model.stem[0].weight.std().item() > 0.05


def test_neck_convs_start_small_and_norms_at_identity():
    torch.manual_seed(0)
    neck = MDEQClsNeck(in_channels=(32, 64), head_channels=(24, 48), final_channels=256)
    neck.init_weights()
    weights = torch.cat([m.weight.flatten() for m in neck.modules() if isinstance(m, nn.Conv2d)])
    assert abs(weights.std().item() - 0.01) < 0.001
    norms = [m for m in neck.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)


TINY = dict(arch=dict(num_channels=(8, 16), expansion=2))


def test_pretrained_path_becomes_a_pretrained_init_cfg_with_a_deprecation_warning(tmp_path):
    source = MDEQ(**TINY)
    source.init_weights()
    path = str(tmp_path / 'mdeq.pth')
    torch.save(source.state_dict(), path)
    with pytest.warns(UserWarning, match='DeprecationWarning: pretrained is deprecated'):
        model = MDEQ(**TINY, pretrained=path)
    assert model.init_cfg == dict(type='Pretrained', checkpoint=path)
    model.init_weights()
    assert torch.equal(model.stem[0].weight, source.stem[0].weight)


@pytest.mark.parametrize('hub_name', ['open-mmlab://msra/hrnetv2_w18',
                                      'torchvision://resnet50', 'mmcls://resnet18'])
def test_hub_weights_of_another_backbone_are_ignored_with_advice(hub_name):
    with pytest.warns(UserWarning, match='MDEQ ignores pretrained') as record:
        model = MDEQ(**TINY, pretrained=hub_name)
    message = str(record[0].message)
    assert hub_name in message and 'pretrained=None' in message and 'Pretrained' in message
    assert model.init_cfg == MDEQ.default_init_cfg
    model.init_weights()  # nothing is downloaded


def test_pretrained_and_init_cfg_together_are_refused_naming_both():
    init_cfg = dict(type='Pretrained', checkpoint='b.pth')
    with pytest.raises(ValueError, match=r"pretrained='a.pth' and init_cfg=.*b\.pth"):
        MDEQ(**TINY, pretrained='a.pth', init_cfg=init_cfg)


def test_pretrained_of_another_type_is_refused():
    with pytest.raises(TypeError, match='pretrained must be a str or None, got 3'):
        MDEQ(**TINY, pretrained=3)
