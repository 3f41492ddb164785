"""The MDEQ backbone: shapes, sizes, honest solver statistics, gradients, validation."""
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope

from mdeq_mm.deq import DEQCore, solve
from mdeq_mm.models import MDEQ, MDEQClsNeck

TINY = dict(num_channels=(8, 16), expansion=2)
# a stride-1 stem keeps inputs for finite differences small
TINY_FLAT = dict(num_channels=(8, 8), expansion=2, stem_stride=1)


def num_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('arch,size,strides', [
    ('small', 64, (4, 8, 16, 32)),
    ('large', 64, (4, 8, 16, 32)),
    ('xl', 64, (4, 8, 16, 32)),
    ('cifar-tiny', 32, (1, 2)),
    ('cifar-large', 32, (1, 2, 4, 8)),
])
def test_output_shapes_and_strides(arch, size, strides):
    model = MDEQ(arch=arch, forward_solver=dict(type='broyden', max_iter=2)).eval()
    with torch.no_grad():
        outs = model(torch.rand(2, 3, size, size))
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == [
        (2, c, size // s, size // s) for c, s in zip(model.num_channels, strides)
    ]


def cls_params(arch, head_channels):
    backbone = MDEQ(arch=arch)
    neck = MDEQClsNeck(backbone.num_channels, head_channels, final_channels=2048)
    return num_params(backbone) + num_params(neck) + 2048 * 1000 + 1000


@pytest.mark.parametrize('arch,head_channels,published', [
    ('small', (24, 48, 96, 192), 18e6),
    ('large', (32, 64, 128, 256), 63e6),
])
def test_imagenet_parameter_counts_match_paper(arch, head_channels, published):
    assert abs(cls_params(arch, head_channels) - published) <= 0.1 * published


def test_cityscapes_small_parameter_count():
    from mmseg.models.decode_heads import FCNHead
    backbone = MDEQ(arch='small')
    channels = sum(backbone.num_channels)
    with DefaultScope.overwrite_default_scope('mmseg'):
        head = FCNHead(in_channels=list(backbone.num_channels), in_index=(0, 1, 2, 3),
                       channels=channels, input_transform='resize_concat', kernel_size=1,
                       num_convs=1, concat_input=False, num_classes=19)
    total = num_params(backbone) + num_params(head)
    assert 8e6 <= total <= 9.5e6, total


def recompute_relative_residual(model, x, z_star):
    """||f(z*) - z*|| / ||f(z*)|| per sample, computed outside the solver."""
    f, _ = model.fixed_point_problem(x)
    fz = f(z_star)
    diff = torch.cat([(a - b).flatten(1) for a, b in zip(fz, z_star)], 1)
    norm = torch.cat([a.flatten(1) for a in fz], 1)
    return diff.norm(dim=1) / norm.norm(dim=1)


def test_reported_residual_is_the_returned_states():
    torch.manual_seed(0)
    model = MDEQ(arch=dict(num_channels=(8, 16, 32), expansion=2),
                 forward_solver=dict(type='broyden', max_iter=10, tol=1e-8)).eval()
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        z_star = model(x)
        recomputed = recompute_relative_residual(model, x, z_star)
    stats = model.last_forward_stats
    assert stats.rel_res.shape == (3, )
    torch.testing.assert_close(stats.rel_res.float(), recomputed.float(), rtol=1e-4, atol=1e-6)
    assert (stats.steps <= 10).all()


def test_broyden_beats_fixed_point_on_a_random_mdeq_small():
    """The authors' MDEQ-small at init: Broyden ~0.33 vs fixed point ~0.84 after 26 steps."""
    torch.manual_seed(0)
    model = MDEQ(arch='small').eval()
    x = torch.rand(1, 3, 64, 64)
    residual = {}
    for solver in ('broyden', 'fixed_point'):
        model.deq.forward_cfg = type(model.deq.forward_cfg)(type=solver, max_iter=26, tol=1e-6)
        with torch.no_grad():
            model(x)
        residual[solver] = model.last_forward_stats.rel_res.item()
    assert residual['broyden'] < 0.6 * residual['fixed_point'], residual
    assert residual['broyden'] < 0.5, residual


def test_fixed_point_problem_is_the_map_forward_solves():
    torch.manual_seed(0)
    model = MDEQ(arch=TINY, forward_solver=dict(type='broyden', max_iter=6, tol=1e-9)).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        z_star = model(x)
        problem = model.fixed_point_problem(x)
        flat_f, flat_z0 = problem.flat()
        flat_star, _ = solve(flat_f, flat_z0, solver='broyden', max_iter=6, tol=1e-9)
    assert all(torch.count_nonzero(z) == 0 for z in problem.z0)
    torch.testing.assert_close(flat_star, torch.cat([z.flatten(1) for z in z_star], 1))


def test_eval_budget_limits_solver_steps():
    # tol=0 never stops a sample early: the budget alone ends the solve
    model = MDEQ(arch=TINY, forward_solver=dict(type='broyden', max_iter=12, tol=0.0),
                 eval_max_iter=3).eval()
    with torch.no_grad():
        model(torch.rand(1, 3, 32, 32))
    assert model.last_forward_stats.steps.max().item() == 3


def weighted_sum(outs, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum() for o in outs)


def test_equilibrium_gradients_equal_engine_applied_to_f():
    torch.manual_seed(0)
    cfg = dict(forward_solver=dict(type='broyden', max_iter=8, tol=1e-10),
               backward=dict(type='implicit', solver='broyden', max_iter=15, tol=1e-10))
    model = MDEQ(arch=TINY, **cfg).double().train()
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)

    weighted_sum(model(x)).backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    bwd = model.last_backward_stats
    assert bwd is not None and bwd.rel_res.shape == (2, )
    assert torch.isfinite(bwd.rel_res).all() and (bwd.steps <= 15).all()

    model.zero_grad()
    core = DEQCore(cfg['forward_solver'], cfg['backward'])
    weighted_sum(core(*model.fixed_point_problem(x))).backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(got[name], param.grad, msg=name)
    assert got['stem.0.weight'].abs().sum() > 0
    assert got['f.branches.1.blocks.0.conv1.weight_v'].abs().sum() > 0


def test_unrolled_gradients_match_finite_differences():
    torch.manual_seed(0)
    model = MDEQ(arch=TINY_FLAT, unrolled_layers=3, deq_mode='unrolled').double().train()
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: weighted_sum(model(inp)), (x, ))

    param = model.f.branches[0].blocks[0].conv2.weight_v
    weighted_sum(model(x)).backward()
    eps = 1e-6
    for idx in [(0, 0, 0, 0), (3, 5, 1, 2)]:
        with torch.no_grad():
            param[idx] += eps
            plus = weighted_sum(model(x)).item()
            param[idx] -= 2 * eps
            minus = weighted_sum(model(x)).item()
            param[idx] += eps
        assert param.grad[idx].item() == pytest.approx((plus - minus) / (2 * eps), rel=1e-5)


def test_unrolled_mode_runs_unrolled_layers_without_solver():
    model = MDEQ(arch=TINY, unrolled_layers=3, deq_mode='unrolled').train()
    calls = []
    model.f.register_forward_hook(lambda *args: calls.append(1))
    model(torch.rand(1, 3, 32, 32))
    assert len(calls) == 3
    assert model.last_forward_stats is None


def test_dropout_mask_is_shared_across_solver_steps():
    torch.manual_seed(0)
    model = MDEQ(arch=TINY, dropout=0.5, unrolled_layers=2, deq_mode='unrolled').train()
    drop = model.f.branches[0].blocks[0].drop
    masks = []
    drop.register_forward_hook(lambda mod, inp, out: masks.append(mod.mask.clone()))
    model(torch.rand(2, 3, 32, 32))
    model(torch.rand(2, 3, 32, 32))
    assert len(masks) == 4
    assert masks[0].shape == (2, 8, 1, 1)
    assert torch.equal(masks[0], masks[1]) and torch.equal(masks[2], masks[3])
    assert not torch.equal(masks[1], masks[2])


@pytest.mark.parametrize('kwargs,message', [
    (dict(arch='medium'), "unknown MDEQ arch 'medium'"),
    (dict(arch=dict(num_channels=(8, 16), width=3)), r"unknown MDEQ arch key\(s\) \['width'\]"),
    (dict(arch=dict(expansion=2)), 'needs num_channels'),
    (dict(arch=dict(num_channels=(8, 12))), r'num_channels\[1\]=12'),
    (dict(arch=TINY, forward_solver=dict(type='newton')), "unknown solver 'newton'"),
    (dict(arch=TINY, forward_solver=dict(type='broyden', maxiter=3)), 'maxiter'),
    (dict(arch=TINY, backward=dict(type='magic')), "'magic'"),
    (dict(arch=TINY, f_norm_cfg=dict(type='SyncBN')), "'SyncBN' is not allowed inside f"),
    (dict(arch=TINY, deq_mode='implicit'), "deq_mode must be one of"),
    (dict(arch=TINY, in_channels=0), 'in_channels must be a positive int'),
    (dict(arch=TINY, eval_max_iter=0), 'eval_max_iter must be None or an int >= 1, got 0'),
    (dict(arch=dict(num_channels=())), r'num_channels must be a non-empty tuple .* got \(\)'),
    (dict(arch=dict(num_channels=32)), 'num_channels must be a non-empty tuple .* got 32'),
    (dict(arch=dict(num_channels=(8, 0))), r'got \(8, 0\)'),
])
def test_bad_config_names_the_bad_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MDEQ(**kwargs)


def test_bad_input_names_sizes_and_divisor():
    model = MDEQ(arch=TINY).eval()
    with pytest.raises(ValueError, match=r'divisible by 8 .* got 30x32'):
        model(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\), got \(1, 4, 32, 32\)'):
        model(torch.rand(1, 4, 32, 32))


GRAD_CFG = dict(forward_solver=dict(type='broyden', max_iter=10, tol=1e-8),
                backward=dict(type='implicit', solver='broyden', max_iter=12, tol=1e-8))


def images_with_a_nan_one(value=float('nan')):
    """Three images in float64; the middle one is entirely ``value``."""
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x[1] = value
    return x


def frozen_bn_model(norm_cfg):
    """A float64 MDEQ in training mode with its BN layers (if any) in eval mode."""
    torch.manual_seed(0)
    model = MDEQ(arch=TINY, norm_cfg=norm_cfg, **GRAD_CFG).double().train()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eval()
    return model


def param_grads(model, x, samples=(0, 1, 2)):
    """Parameter gradients of a fixed random weighting of the outputs of images ``samples``."""
    model.zero_grad()
    gen = torch.Generator().manual_seed(2)
    loss = 0
    for out in model(x):
        weights = torch.randn((3, ) + out.shape[1:], generator=gen, dtype=out.dtype)
        loss = loss + (out * weights[list(samples)]).sum()
    loss.backward()
    return {name: param.grad.clone() for name, param in model.named_parameters()}


@pytest.mark.parametrize('norm_cfg', [dict(type='BN'), dict(type='GN', num_groups=4)],
                         ids=['eval-BN', 'GN'])
def test_a_nan_image_contributes_no_gradient(norm_cfg):
    model = frozen_bn_model(norm_cfg)
    x = images_with_a_nan_one()
    with pytest.warns(UserWarning, match='MDEQ got 1 of 3 image'):
        with_nan = param_grads(model, x)
    assert model.last_failed.tolist() == [False, True, False]
    without = param_grads(model, x[[0, 2]], samples=(0, 2))
    for name, grad in without.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(with_nan[name], grad, rtol=1e-6, atol=1e-12, msg=name)


def test_a_nan_image_in_a_train_mode_bn_batch_leaves_gradients_and_statistics_finite():
    torch.manual_seed(0)
    model = MDEQ(arch=TINY, norm_cfg=dict(type='BN'), **GRAD_CFG).double().train()
    with pytest.warns(UserWarning, match='NaN/Inf'):
        grads = param_grads(model, images_with_a_nan_one(float('inf')))
    assert all(torch.isfinite(grad).all() for grad in grads.values())
    assert all(torch.isfinite(buf).all() for buf in model.buffers())


def test_a_nan_image_is_flagged_in_eval_and_leaves_the_other_images_unchanged():
    model = frozen_bn_model(dict(type='BN')).eval()
    x = images_with_a_nan_one()
    with torch.no_grad(), pytest.warns(UserWarning, match='MDEQ got 1 of 3 image'):
        outs = model(x)
    assert model.last_failed.tolist() == [False, True, False]
    assert model.last_nonfinite_input.tolist() == [False, True, False]
    with torch.no_grad():
        alone = model(x[[0, 2]])
    assert model.last_failed.tolist() == [False, False]
    for out, ref in zip(outs, alone):
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out[[0, 2]], ref, rtol=1e-6, atol=1e-10)


def seg_model_cfg():
    norm_cfg = dict(type='BN', requires_grad=True)
    return ConfigDict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', size=(32, 32)),
        backbone=dict(type='MDEQ', arch=TINY, norm_cfg=norm_cfg,
                      forward_solver=dict(type='broyden', max_iter=4)),
        decode_head=dict(type='FCNHead', in_channels=[8, 16], in_index=(0, 1), channels=24,
                         input_transform='resize_concat', kernel_size=1, num_convs=1,
                         concat_input=False, num_classes=3, norm_cfg=norm_cfg),
        test_cfg=dict(mode='whole'))


def seg_batch():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(2):
        sample = SegDataSample(metainfo=dict(img_shape=(32, 32), ori_shape=(32, 32),
                                             pad_shape=(32, 32)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 3, (1, 32, 32)))
        samples.append(sample)
    return torch.rand(2, 3, 32, 32), samples


def test_encoder_decoder_loss_reaches_stem_f_and_head():
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(seg_model_cfg()).train()
    inputs, samples = seg_batch()
    losses = model.loss(inputs, samples)
    losses['decode.loss_ce'].backward()
    for name in ('backbone.stem.0.weight', 'backbone.injection.0.weight',
                 'backbone.f.branches.0.blocks.0.conv1.weight_v',
                 'backbone.f.post_fuse_layers.1.conv.weight_g', 'decode_head.conv_seg.weight'):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name

    model.eval()
    with torch.no_grad():
        preds = model.predict(inputs, samples)
    assert preds[0].pred_sem_seg.data.shape == (1, 32, 32)


def test_image_classifier_loss_and_predict_under_mmpretrain_scope():
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    cfg = dict(
        type='ImageClassifier',
        backbone=dict(type='MDEQ', arch=TINY, forward_solver=dict(type='anderson', max_iter=4)),
        neck=dict(type='MDEQClsNeck', in_channels=(8, 16), head_channels=(4, 8),
                  final_channels=32),
        head=dict(type='LinearClsHead', num_classes=5, in_channels=32,
                  loss=dict(type='CrossEntropyLoss')))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg).train()
    inputs = torch.rand(2, 3, 32, 32)
    samples = [DataSample().set_gt_label(i) for i in (1, 3)]
    loss = model.loss(inputs, samples)['loss']
    loss.backward()
    assert model.backbone.f.branches[0].blocks[0].conv1.weight_v.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        preds = model.predict(inputs)
    assert preds[0].pred_score.shape == (5, )
