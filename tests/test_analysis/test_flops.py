"""FLOPs of MDEQ and plain models: tracing works, and an inference costs once + NFE x f."""
import dataclasses

import pytest
import torch
from mmengine.analysis import get_model_complexity_info

from mdeq_mm.analysis import build_model, load_config
from mdeq_mm.analysis.flops import (Complexity, count_flops, evaluation_budget, file_inputs,
                                    format_complexity, measure_nfe, model_complexity,
                                    padded_shape, traced_flops)
from mdeq_mm.datasets import generate_cityscapes_like
from mdeq_mm.models import MDEQ

pytestmark = pytest.mark.filterwarnings('ignore::torch.jit.TracerWarning')

TINY_ARCH = dict(num_channels=(8, 16), expansion=2)
TINY_HRNET = dict(
    stage1=dict(num_modules=1, num_branches=1, block='BOTTLENECK', num_blocks=(1, ),
                num_channels=(8, )),
    **{f'stage{n}': dict(num_modules=1, num_branches=n, block='BASIC', num_blocks=(1, ) * n,
                         num_channels=(4, 8, 16, 32)[:n]) for n in (2, 3, 4)})


def tiny_mdeq(**kwargs) -> MDEQ:
    return MDEQ(arch=dict(TINY_ARCH, **kwargs.pop('arch', {})), **kwargs).eval()


@pytest.fixture(scope='module')
def segmentor(demo_config):
    """The demo MDEQ segmentor, with a fixed-point forward solver that spends its budget."""
    model = build_model(load_config(demo_config)).eval()
    deq = model.backbone.deq
    deq.forward_cfg = dataclasses.replace(deq.forward_cfg, type='fixed_point', tol=0.0)
    return model


def test_get_model_complexity_info_counts_an_mdeq_backbone_and_segmentor(segmentor):
    backbone = tiny_mdeq(forward_solver=dict(type='broyden', max_iter=3))
    info = get_model_complexity_info(backbone, inputs=(torch.rand(1, 3, 32, 32), ),
                                     show_table=False, show_arch=False)
    assert info['flops'] > 0 and info['params'] == sum(p.numel() for p in backbone.parameters())
    with evaluation_budget(segmentor.backbone, 2):
        info = get_model_complexity_info(segmentor, inputs=(torch.rand(1, 3, 64, 128), ),
                                         show_table=False, show_arch=False)
    assert info['flops'] > 0


@pytest.fixture(scope='module')
def complexity(segmentor):
    return model_complexity(segmentor, (64, 128))


@pytest.mark.parametrize('budget', [1, 3])
def test_traced_inference_costs_once_plus_budget_times_f(segmentor, complexity, budget):
    mdeq, c = segmentor.backbone, complexity
    assert c.is_deq and c.budget == mdeq.deq.forward_cfg.max_iter
    assert c.flops_once > 0 and c.flops_f > 0
    with evaluation_budget(mdeq, budget), torch.no_grad():
        traced = traced_flops(segmentor, (torch.rand(1, 3, 64, 128), ))
    # fixed-point iteration adds no counted arithmetic of its own
    assert traced == c.total(budget) == c.flops_once + budget * c.flops_f
    assert mdeq.eval_max_iter is None


def test_a_classifier_costs_once_plus_budget_times_f(config_path):
    model = build_model(load_config(config_path('mdeq/mdeq-tiny_1xb32-300it_digits-16x16.py')))
    deq = model.backbone.deq
    deq.forward_cfg = dataclasses.replace(deq.forward_cfg, type='fixed_point', tol=0.0)
    c = model_complexity(model, (16, 16))
    with evaluation_budget(model.backbone, 2), torch.no_grad():
        assert traced_flops(model, (torch.rand(1, 3, 16, 16), )) == c.total(2)
    assert c.params == sum(p.numel() for p in model.parameters())


def test_broyden_arithmetic_is_a_small_extra_on_top_of_its_f_evaluations():
    mdeq = tiny_mdeq(forward_solver=dict(type='broyden', max_iter=6, tol=0.0))
    c = model_complexity(mdeq, (32, 32))
    with torch.no_grad():
        traced = traced_flops(mdeq, (torch.rand(1, 3, 32, 32), ))
    assert c.total() < traced < c.total() + 0.05 * 6 * c.flops_f


def test_flops_of_f_scale_with_pixels_and_channel_widths():
    def flops_f(arch, size):
        return model_complexity(tiny_mdeq(arch=arch), size).flops_f

    base = flops_f({}, (32, 32))
    assert flops_f({}, (64, 64)) == 4 * base  # every operation of f is per pixel
    wide = flops_f(dict(num_channels=(16, 32)), (32, 32))
    assert 3.5 * base < wide <= 4 * base  # convolutions 4x, norms and upsampling 2x


def test_a_plain_model_is_counted_whole(config_path):
    cfg = load_config(config_path('hrnet/fcn_hr18s_4xb3-120k_cityscapes-512x1024.py'))
    cfg.model.backbone.extra = TINY_HRNET
    cfg.model.decode_head.update(in_channels=[4, 8, 16, 32], channels=60)
    model = build_model(cfg)
    c = model_complexity(model, (64, 64))
    assert not c.is_deq and c.flops_f is None and c.budget is None
    info = get_model_complexity_info(model, inputs=(torch.rand(1, 3, 64, 64), ),
                                     show_table=False, show_arch=False)
    assert c.total() == c.flops_once == info['flops']
    assert c.params == sum(p.numel() for p in model.parameters())
    assert count_flops(model, torch.zeros(2, 3, 64, 64)) == {'flops': c.flops_once}
    assert 'f-evaluations' not in format_complexity(c)


def test_an_auxiliary_head_is_left_out_of_the_parameters(demo_config):
    cfg = load_config(demo_config)
    head = cfg.model.decode_head
    cfg.model.auxiliary_head = dict(head, in_channels=head.in_channels[0], in_index=0,
                                    input_transform=None)
    model = build_model(cfg)
    aux = sum(p.numel() for p in model.auxiliary_head.parameters())
    assert model_complexity(model, (64, 128)).params == (
        sum(p.numel() for p in model.parameters()) - aux)


def test_input_shape_is_padded_to_the_mdeq_stride():
    mdeq = tiny_mdeq()  # total stride 4 * 2
    assert padded_shape(mdeq, [30]) == (32, 32)
    assert padded_shape(mdeq, [30, 41]) == (32, 48)
    with pytest.raises(ValueError, match='H \\[W\\]'):
        padded_shape(mdeq, [1, 2, 3])


def test_measured_nfe_counts_each_image_s_solve():
    spent = tiny_mdeq(forward_solver=dict(type='broyden', max_iter=5, tol=0.0))
    images = [torch.rand(3, 32, 32), torch.rand(1, 3, 32, 32)]
    measured = measure_nfe(spent, images)
    assert measured.steps == measured.evaluations == [5, 5]
    early = tiny_mdeq(forward_solver=dict(type='broyden', max_iter=12, tol=0.9, check_every=4))
    measured = measure_nfe(early, images)
    assert all(1 <= s <= e <= 12 and e % 4 == 0 for s, e in zip(measured.steps,
                                                               measured.evaluations))
    c = Complexity((32, 32), 1, flops_once=10.0, flops_f=2.0, budget=12)
    text = format_complexity(c, measured, tol=0.9)
    assert f'mean {measured.mean_steps:.2f} f-evaluations to reach tol=0.9' in text
    assert f'= {c.total(measured.mean_steps) / 1e9:.4g}G' in text
    with pytest.raises(ValueError, match='no images'):
        measure_nfe(spent, [])


def test_image_files_are_read_resized_and_normalized(tmp_path, segmentor):
    root = generate_cityscapes_like(str(tmp_path), num_train=1, num_val=2, height=32, width=64)
    inputs = list(file_inputs(segmentor, [str(tmp_path / 'leftImg8bit' / 'val')], (64, 128)))
    assert len(inputs) == 2 and all(x.shape == (1, 3, 64, 128) for x in inputs)
    assert abs(float(inputs[0].mean())) < 3  # normalized, not 0-255
    with pytest.raises(FileNotFoundError, match='no image file'):
        list(file_inputs(segmentor, [root + '/missing'], (64, 128)))
    (tmp_path / 'notes').mkdir()
    (tmp_path / 'notes' / 'x.txt').write_text('not an image')
    with pytest.raises(ValueError, match='no image files'):
        list(file_inputs(segmentor, [str(tmp_path / 'notes')], (64, 128)))
