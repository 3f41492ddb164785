import copy
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mdeq_mm.models.layers.weight_norm_conv import (WeightNormConv2d, make_conv,
                                                   reset_weight_norm)


def hand_weight(g, v):
    norm = v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    return g * v / norm


def make_layer(dtype=torch.float32):
    torch.manual_seed(0)
    conv = WeightNormConv2d(3, 6, 3, padding=1, bias=True).to(dtype)
    with torch.no_grad():
        conv.weight_g.uniform_(0.5, 2.0)
        conv.bias.normal_()
    return conv


def count_weight_computations(monkeypatch):
    calls = []
    original = WeightNormConv2d.compute_weight

    def counting(self):
        calls.append(self)
        return original(self)

    monkeypatch.setattr(WeightNormConv2d, 'compute_weight', counting)
    return calls


def test_forward_equals_conv_with_hand_normalized_weight():
    conv = make_layer()
    x = torch.randn(2, 3, 7, 5)
    expected = F.conv2d(
        x, hand_weight(conv.weight_g, conv.weight_v), conv.bias, padding=1)
    torch.testing.assert_close(conv(x), expected)
    conv.reset_weight()
    torch.testing.assert_close(conv(x), expected)


def test_initial_weight_equals_direction():
    conv = WeightNormConv2d(4, 5, 3)
    assert conv.weight_g.shape == (5, 1, 1, 1)
    assert conv.weight_v.shape == (5, 4, 3, 3)
    assert not hasattr(conv, 'weight')
    torch.testing.assert_close(conv.compute_weight(), conv.weight_v)


def test_loads_torch_weight_norm_state_dict():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # torch's weight_norm is deprecated
        reference = nn.utils.weight_norm(nn.Conv2d(3, 4, 3, padding=1))
    with torch.no_grad():
        reference.weight_g.mul_(1.7)
    conv = WeightNormConv2d(3, 4, 3, padding=1)
    conv.load_state_dict(reference.state_dict())
    x = torch.randn(1, 3, 6, 6)
    torch.testing.assert_close(conv(x), reference(x))


def test_reset_computes_weight_once_for_many_calls(monkeypatch):
    calls = count_weight_computations(monkeypatch)
    conv = make_layer()
    x = torch.randn(1, 3, 5, 5)
    conv.reset_weight()
    cached = conv._cached_weight
    for _ in range(4):
        conv(x)
    assert len(calls) == 1
    assert conv._cached_weight is cached
    conv.reset_weight()
    assert len(calls) == 2


def test_without_reset_every_call_computes_weight(monkeypatch):
    calls = count_weight_computations(monkeypatch)
    conv = make_layer()
    x = torch.randn(1, 3, 5, 5)
    conv(x)
    conv(x)
    assert len(calls) == 2
    assert conv._cached_weight is None


def test_cache_is_bypassed_after_in_place_parameter_update():
    conv = make_layer()
    x = torch.randn(1, 3, 5, 5)
    conv.reset_weight()
    with torch.no_grad():  # what an optimizer step does
        conv.weight_g.mul_(3.0)
    expected = F.conv2d(
        x, hand_weight(conv.weight_g, conv.weight_v), conv.bias, padding=1)
    torch.testing.assert_close(conv(x), expected)


def test_cache_made_without_grad_is_not_used_for_training():
    conv = make_layer()
    with torch.no_grad():
        conv.reset_weight()
    conv(torch.randn(1, 3, 5, 5)).sum().backward()
    assert conv.weight_g.grad is not None
    assert conv.weight_v.grad is not None


def test_gradients_match_hand_written_version():
    conv = make_layer(torch.float64)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    g = conv.weight_g.detach().clone().requires_grad_()
    v = conv.weight_v.detach().clone().requires_grad_()

    conv.reset_weight()
    # Two calls share the cached weight, as solver steps do.
    (conv(x).square().sum() + conv(2 * x).sum()).backward()
    w = hand_weight(g, v)
    expected = (
        F.conv2d(x, w, conv.bias, padding=1).square().sum() +
        F.conv2d(2 * x, w, conv.bias, padding=1).sum())
    expected.backward()

    torch.testing.assert_close(conv.weight_g.grad, g.grad)
    torch.testing.assert_close(conv.weight_v.grad, v.grad)


def test_reset_weight_norm_reaches_nested_layers():
    model = nn.Sequential(
        make_conv(2, 4, 3, weight_norm=True), make_conv(4, 4, 1),
        nn.Sequential(make_conv(4, 2, 1, weight_norm=True)))
    reset_weight_norm(model)
    assert model[0]._cached_weight is not None
    assert model[2][0]._cached_weight is not None
    assert isinstance(model[1], nn.Conv2d)
    assert not isinstance(model[1], WeightNormConv2d)


def test_deepcopy_after_reset_drops_cache():
    conv = make_layer()
    conv.reset_weight()
    clone = copy.deepcopy(conv)
    assert clone._cached_weight is None
    x = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(clone(x), conv(x))


@pytest.mark.parametrize('stride', [1, 2])
def test_make_conv_pads_to_same_size(stride):
    conv = make_conv(2, 4, 3, stride=stride, weight_norm=True)
    assert conv.bias is None
    assert conv(torch.randn(1, 2, 8, 8)).shape[-1] == 8 // stride
