"""Conversion of the authors' MDEQ checkpoints (v1: locuslab/mdeq, v2: locuslab/deq), on
synthetic checkpoints in their layouts (tests/authors_checkpoints.py)."""
import importlib.util
import os.path as osp
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.models.heads import LinearClsHead
from mmseg.models.decode_heads import FCNHead

from mdeq_mm.models import MDEQ, MDEQClsNeck, MDEQModule
from mdeq_mm.models.layers import WeightNormConv2d
from mdeq_mm.models.official_checkpoint import (CheckpointMismatchError,
                                                convert_official_checkpoint,
                                                describe_official_checkpoint,
                                                detect_version, unwrap_state_dict)

from ..authors_checkpoints import (CHANNELS, EXPANSION, FINAL_CHANNELS, GROUPS, HEAD_CHANNELS,
                                   NUM_CLASSES, authors_checkpoint)

TOOL = osp.join(osp.dirname(__file__), '..', '..', 'tools', 'model_converters',
                'convert_mdeq_checkpoint.py')


def sub(state_dict, prefix):
    return OrderedDict(
        (k[len(prefix):], v) for k, v in state_dict.items() if k.startswith(prefix))


def build_backbone(**arch):
    return MDEQ(arch=dict(num_channels=CHANNELS, expansion=EXPANSION, num_groups=GROUPS, **arch))


def build_fcn_head():
    with DefaultScope.overwrite_default_scope('mmseg'):
        return FCNHead(
            in_channels=list(CHANNELS), in_index=[0, 1, 2], channels=sum(CHANNELS),
            num_convs=1, kernel_size=1, concat_input=False, input_transform='resize_concat',
            num_classes=NUM_CLASSES, norm_cfg=dict(type='BN'))


def load_strict(module, state_dict):
    module.load_state_dict(state_dict, strict=True)
    loaded = module.state_dict()
    assert loaded.keys() == state_dict.keys()
    for key, value in state_dict.items():
        assert torch.equal(loaded[key], value), key


# Where each of the authors' tensors must reappear unchanged.
SAME_TENSOR_PREFIXES = (('downsample.', 'backbone.stem.'), ('stage0.', 'backbone.injection.'),
                        ('fullstage.', 'backbone.f.'),
                        ('incre_modules.', 'neck.incre_modules.'),
                        ('downsamp_modules.', 'neck.downsamp_modules.'),
                        ('final_layer.', 'neck.final_layer.'), ('classifier.', 'head.fc.'),
                        ('last_layer.0.weight', 'decode_head.convs.0.conv.weight'),
                        ('last_layer.1.', 'decode_head.convs.0.bn.'),
                        ('last_layer.3.', 'decode_head.conv_seg.'))


def expected_target_key(key):
    for src, dst in SAME_TENSOR_PREFIXES:
        if key.startswith(src):
            return dst + key[len(src):]
    return None


@pytest.mark.parametrize('version', ['v1', 'v2'])
@pytest.mark.parametrize('task', ['cls', 'seg'])
def test_round_trip_preserves_every_tensor(version, task):
    source = authors_checkpoint(version, task)
    assert detect_version(source) == version
    converted = convert_official_checkpoint(source, task)

    folded_mean = 'decode_head.convs.0.bn.running_mean'
    accounted = set()
    for key, value in source.items():
        target = expected_target_key(key)
        if target is None or target == folded_mean:
            continue  # copies of f, the folded conv bias
        assert torch.equal(converted[target], value), (key, target)
        accounted.add(target)
    if task == 'seg':
        assert torch.equal(converted[folded_mean],
                           source['last_layer.1.running_mean'] - source['last_layer.0.bias'])
        accounted.add(folded_mean)
    else:  # the head bottleneck BNs have no affine parameters: identity filled in
        for i, h in enumerate(HEAD_CHANNELS):
            for n, c in ((1, h), (2, h), (3, 4 * h)):
                bn = f'neck.incre_modules.{i}.0.bn{n}.'
                assert torch.equal(converted[bn + 'weight'], torch.ones(c))
                assert torch.equal(converted[bn + 'bias'], torch.zeros(c))
                accounted.update((bn + 'weight', bn + 'bias'))
    assert accounted == set(converted)

    load_strict(build_backbone(), sub(converted, 'backbone.'))
    load_strict(
        MDEQModule(CHANNELS, expansion=EXPANSION, num_groups=GROUPS),
        sub(converted, 'backbone.f.'))
    if task == 'cls':
        load_strict(MDEQClsNeck(CHANNELS, HEAD_CHANNELS, FINAL_CHANNELS), sub(converted, 'neck.'))
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            head = LinearClsHead(NUM_CLASSES, FINAL_CHANNELS)
        load_strict(head, sub(converted, 'head.'))
    else:
        load_strict(build_fcn_head(), sub(converted, 'decode_head.'))


def test_wrapped_and_prefixed_checkpoint_converts_like_the_raw_one():
    raw = authors_checkpoint('v1', 'seg')
    # DataParallel around the authors' segmentation training wrapper (model + loss).
    wrapped = OrderedDict(('module.model.' + k, v) for k, v in raw.items())
    wrapped['module.loss.criterion.weight'] = torch.rand(NUM_CLASSES)
    checkpoint = {'epoch': 3, 'model': 'mdeq', 'state_dict': wrapped}
    assert list(unwrap_state_dict(checkpoint)) == list(raw)
    expected = convert_official_checkpoint(raw, 'seg')
    converted = convert_official_checkpoint(checkpoint, 'seg')
    assert converted.keys() == expected.keys()
    assert all(torch.equal(converted[k], expected[k]) for k in expected)
    assert convert_official_checkpoint({'model': raw}, 'seg').keys() == expected.keys()


def test_describe_reads_the_architecture_from_the_weights():
    layout = describe_official_checkpoint(authors_checkpoint('v2', 'cls', post_affine=False))
    assert layout.version == 'v2' and layout.heads == ('cls', )
    assert layout.backbone_arch() == dict(
        num_channels=CHANNELS, expansion=EXPANSION, injection_conv=True, post_gn_affine=False)
    assert layout.head_channels == HEAD_CHANNELS
    assert (layout.final_channels, layout.num_classes) == (FINAL_CHANNELS, NUM_CLASSES)


def test_unknown_key_is_listed():
    source = authors_checkpoint('v2', 'cls')
    source['fullstage.branches.1.blocks.0.conv3.weight'] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError) as info:
        convert_official_checkpoint(source, 'cls')
    assert info.value.unknown == ['fullstage.branches.1.blocks.0.conv3.weight']
    assert 'fullstage.branches.1.blocks.0.conv3.weight' in str(info.value)
    assert not info.value.missing


def test_missing_key_is_listed():
    source = authors_checkpoint('v2', 'cls')
    del source['fullstage.fuse_layers.2.0.net.1.conv.weight']
    del source['final_layer.1.running_var']
    with pytest.raises(CheckpointMismatchError) as info:
        convert_official_checkpoint(source, 'cls')
    assert info.value.missing == [
        'final_layer.1.running_var', 'fullstage.fuse_layers.2.0.net.1.conv.weight'
    ]
    assert 'final_layer.1.running_var' in str(info.value)


def test_wrong_task_lists_the_head_and_says_which_task_fits():
    with pytest.raises(CheckpointMismatchError, match="task='seg'") as info:
        convert_official_checkpoint(authors_checkpoint('v2', 'seg'), 'cls')
    assert 'last_layer.3.weight' in info.value.unknown
    assert 'classifier.weight' in info.value.missing


def test_backbone_task_drops_the_head():
    converted = convert_official_checkpoint(authors_checkpoint('v1', 'cls'), 'backbone')
    assert all(k.startswith('backbone.') for k in converted)
    load_strict(build_backbone(), sub(converted, 'backbone.'))


@pytest.mark.parametrize('break_it, message', [
    (lambda sd: sd.__setitem__('fullstage_copy.branches.0.blocks.0.conv1.weight',
                               torch.zeros(1, 1, 3, 3)), 'has shape'),
    (lambda sd: sd.pop('fullstage_copy.post_fuse_layers.1.conv.weight'),
     'fullstage_copy.post_fuse_layers.1.conv.weight'),
    (lambda sd: sd.__setitem__('deq.func.branches.0.blocks.0.gn1.weight',
                               torch.zeros(EXPANSION * CHANNELS[0])), 'differs'),
])
def test_inconsistent_v1_copies_of_f_are_rejected(break_it, message):
    source = authors_checkpoint('v1', 'cls')
    break_it(source)
    with pytest.raises(CheckpointMismatchError, match=message):
        convert_official_checkpoint(source, 'cls')


def effective_weight(g, v):
    """The authors' weight normalization over output channels."""
    return g.reshape(-1, 1, 1, 1) * v / v.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)


@pytest.mark.parametrize('form', ['flat_g', 'parametrizations', 'folded'])
def test_weight_norm_forms_give_the_same_conv(form):
    source = authors_checkpoint('v2', 'cls')
    conv = 'fullstage.branches.0.blocks.0.conv1.'
    g, v = source.pop(conv + 'weight_g'), source.pop(conv + 'weight_v')
    weight = effective_weight(g, v)
    if form == 'flat_g':
        source[conv + 'weight_g'], source[conv + 'weight_v'] = g.flatten(), v
    elif form == 'parametrizations':
        source[conv + 'parametrizations.weight.original0'] = g
        source[conv + 'parametrizations.weight.original1'] = v
    else:
        weight[1] = 0  # a dead filter must stay zero, not become NaN
        source[conv + 'weight'] = weight
    converted = convert_official_checkpoint(source, 'cls')
    ours = WeightNormConv2d(CHANNELS[0], EXPANSION * CHANNELS[0], 3, bias=False)
    ours.load_state_dict(sub(converted, 'backbone.f.branches.0.blocks.0.conv1.'), strict=True)
    if form == 'folded':
        assert torch.equal(ours.compute_weight().detach(), weight)
    else:
        torch.testing.assert_close(ours.compute_weight().detach(), weight)


def reference_f(sd, z, x0):
    """f written out with functionals from the authors' tensors (weight norm by hand)."""

    def wn(name):
        return effective_weight(sd[name + '.weight_g'], sd[name + '.weight_v'])

    def gn(x, name, groups=GROUPS):
        return F.group_norm(x, groups, sd[name + '.weight'], sd[name + '.bias'])

    blocks = []
    for i, z_i in enumerate(z):
        b = f'fullstage.branches.{i}.blocks.0'
        h = F.relu(gn(F.conv2d(z_i, wn(b + '.conv1'), padding=1), b + '.gn1'))
        h = F.conv2d(h, wn(b + '.conv2'), padding=1)
        h = gn(h + x0 if i == 0 else h, b + '.gn2')
        blocks.append(gn(F.relu(h + z_i), b + '.gn3'))
    outs = []
    for i, b_i in enumerate(blocks):
        u = b_i
        for j, b_j in enumerate(blocks):
            net = f'fullstage.fuse_layers.{i}.{j}.net'
            if j > i:
                up = gn(F.conv2d(b_j, sd[net + '.conv.weight']), net + '.gnorm')
                u = u + F.interpolate(up, scale_factor=2**(j - i), mode='nearest')
            elif j < i:
                down = b_j
                for k in range(i - j):
                    down = gn(F.conv2d(down, sd[f'{net}.{k}.conv.weight'], stride=2, padding=1),
                              f'{net}.{k}.gnorm')
                    down = F.relu(down) if k < i - j - 1 else down
                u = u + down
        post = f'fullstage.post_fuse_layers.{i}'
        outs.append(gn(F.conv2d(F.relu(u), wn(post + '.conv')), post + '.gnorm', GROUPS // 2))
    return outs


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_converted_f_computes_the_authors_block_and_fusion(version):
    source = OrderedDict((k, v.double()) for k, v in authors_checkpoint(version, 'cls').items())
    converted = convert_official_checkpoint(source, 'cls')
    f = MDEQModule(CHANNELS, expansion=EXPANSION, num_groups=GROUPS).double().eval()
    f.load_state_dict(sub(converted, 'backbone.f.'), strict=True)
    gen = torch.Generator().manual_seed(1)
    z = tuple(
        torch.randn(2, c, 8 >> i, 8 >> i, generator=gen, dtype=torch.float64)
        for i, c in enumerate(CHANNELS))
    x0 = torch.randn(z[0].shape, generator=gen, dtype=torch.float64)
    f.reset(z)
    for ours, ref in zip(f(z, (x0, None, None)), reference_f(source, z, x0)):
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('train', [False, True])
def test_folded_seg_conv_bias_gives_equal_outputs(train):
    source = authors_checkpoint('v1', 'seg')
    head = build_fcn_head()
    head.load_state_dict(sub(convert_official_checkpoint(source, 'seg'), 'decode_head.'))
    head.train(train)
    x = torch.randn(4, sum(CHANNELS), 5, 5, generator=torch.Generator().manual_seed(2))
    y = F.conv2d(x, source['last_layer.0.weight'], source['last_layer.0.bias'])
    y = F.batch_norm(y, source['last_layer.1.running_mean'].clone(),
                     source['last_layer.1.running_var'].clone(), source['last_layer.1.weight'],
                     source['last_layer.1.bias'], training=train)
    y = F.conv2d(F.relu(y), source['last_layer.3.weight'], source['last_layer.3.bias'])
    with torch.no_grad():  # conv_seg, not cls_seg: no dropout in training mode
        torch.testing.assert_close(head.conv_seg(head.convs(x)), y, rtol=1e-4, atol=1e-5)


def test_absent_gn_affine_parameters_are_filled_with_the_identity():
    source = authors_checkpoint('v2', 'seg', block_affine=False, fuse_affine=False)
    converted = convert_official_checkpoint(source, 'seg')
    gn1 = 'backbone.f.branches.2.blocks.0.gn1.'
    assert torch.equal(converted[gn1 + 'weight'], torch.ones(EXPANSION * CHANNELS[2]))
    assert torch.equal(converted[gn1 + 'bias'], torch.zeros(EXPANSION * CHANNELS[2]))
    fuse = 'backbone.f.fuse_layers.2.0.net.0.gnorm.'
    assert torch.equal(converted[fuse + 'weight'], torch.ones(CHANNELS[0]))
    load_strict(build_backbone(), sub(converted, 'backbone.'))


def test_post_fusion_gn_without_affine_follows_the_target_arch():
    source = authors_checkpoint('v2', 'cls', post_affine=False)
    gnorm = 'backbone.f.post_fuse_layers.1.gnorm.weight'
    mirrored = convert_official_checkpoint(source, 'cls')
    assert gnorm not in mirrored
    load_strict(build_backbone(post_gn_affine=False), sub(mirrored, 'backbone.'))
    arch = dict(num_channels=CHANNELS, expansion=EXPANSION, post_gn_affine=True)
    filled = convert_official_checkpoint(source, 'cls', arch=arch)
    assert torch.equal(filled[gnorm], torch.ones(CHANNELS[1]))
    load_strict(build_backbone(), sub(filled, 'backbone.'))


def test_learned_post_fusion_gn_cannot_be_dropped():
    arch = dict(num_channels=CHANNELS, expansion=EXPANSION, post_gn_affine=False)
    with pytest.raises(CheckpointMismatchError, match='post_gn_affine=True'):
        convert_official_checkpoint(authors_checkpoint('v2', 'cls'), 'cls', arch=arch)


@pytest.mark.parametrize('arch, message', [
    ('small', 'num_channels'),
    (dict(num_channels=CHANNELS, expansion=3), 'expansion: checkpoint 2, arch 3'),
    (dict(num_channels=CHANNELS, expansion=EXPANSION, injection_conv=False), 'injection_conv'),
])
def test_arch_mismatch_is_named(arch, message):
    with pytest.raises(ValueError, match=message):
        convert_official_checkpoint(authors_checkpoint('v1', 'cls'), 'cls', arch=arch)


def test_checkpoint_without_injection_conv_converts_for_a_direct_injection_arch():
    source = authors_checkpoint('v2', 'seg', injection=False)
    arch = dict(num_channels=CHANNELS, expansion=EXPANSION, injection_conv=True)
    with pytest.raises(ValueError, match='injection_conv'):
        convert_official_checkpoint(source, 'seg', arch=arch)
    converted = convert_official_checkpoint(source, 'seg', arch=dict(arch, injection_conv=False))
    assert not any(k.startswith('backbone.injection.') for k in converted)


def test_big_kernels_are_rejected():
    source = authors_checkpoint('v2', 'cls')
    conv = 'fullstage.branches.1.blocks.0.conv1.weight_v'
    source[conv] = torch.zeros(EXPANSION * CHANNELS[1], CHANNELS[1], 5, 5)
    with pytest.raises(CheckpointMismatchError, match='5x5 kernel'):
        convert_official_checkpoint(source, 'cls')


def seg_config():
    return dict(
        default_scope='mmseg',
        model=dict(
            type='EncoderDecoder',
            data_preprocessor=dict(type='SegDataPreProcessor', mean=[0.0] * 3, std=[1.0] * 3),
            backbone=dict(
                type='MDEQ',
                arch=dict(num_channels=CHANNELS, expansion=EXPANSION, num_groups=GROUPS)),
            decode_head=dict(
                type='FCNHead', in_channels=list(CHANNELS), in_index=[0, 1, 2],
                channels=sum(CHANNELS), num_convs=1, kernel_size=1, concat_input=False,
                input_transform='resize_concat', num_classes=NUM_CLASSES,
                norm_cfg=dict(type='BN'))))


def test_check_loads_a_segmentor_strictly():
    cfg = seg_config()
    converted = convert_official_checkpoint(
        authors_checkpoint('v1', 'seg'), 'seg', arch=cfg['model']['backbone']['arch'])
    counts = load_tool().check_converted_checkpoint(converted, cfg)
    assert list(counts) == ['backbone', 'decode_head', 'total']
    assert counts['total'] == counts['backbone'] + counts['decode_head']
    del converted['decode_head.conv_seg.bias']
    with pytest.raises(RuntimeError, match='conv_seg.bias'):
        load_tool().check_converted_checkpoint(converted, cfg)


def test_check_loads_a_classifier_strictly():
    cfg = dict(
        default_scope='mmpretrain',
        model=dict(
            type='ImageClassifier',
            backbone=dict(
                type='MDEQ',
                arch=dict(num_channels=CHANNELS, expansion=EXPANSION, num_groups=GROUPS)),
            neck=dict(type='MDEQClsNeck', in_channels=CHANNELS, head_channels=HEAD_CHANNELS,
                      final_channels=FINAL_CHANNELS),
            head=dict(type='LinearClsHead', num_classes=NUM_CLASSES,
                      in_channels=FINAL_CHANNELS)))
    converted = convert_official_checkpoint(authors_checkpoint('v2', 'cls'), 'cls')
    counts = load_tool().check_converted_checkpoint(converted, cfg)
    assert list(counts) == ['backbone', 'neck', 'head', 'total']


def load_tool():
    spec = importlib.util.spec_from_file_location('convert_mdeq_checkpoint', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_cli_checks_then_saves_an_mmengine_checkpoint(tmp_path, capsys):
    tool = load_tool()
    source = authors_checkpoint('v1', 'seg')
    src, dst = tmp_path / 'official.pkl', tmp_path / 'converted.pth'
    torch.save({'state_dict': OrderedDict(('model.' + k, v) for k, v in source.items())}, src)
    config = tmp_path / 'seg_config.py'
    Config(seg_config()).dump(str(config))

    tool.main([str(src), str(dst), '--task', 'seg', '--check', str(config)])
    saved = torch.load(dst, weights_only=True)
    assert saved['meta']['source_layout'] == 'v1' and saved['meta']['source'] == 'official.pkl'
    expected = convert_official_checkpoint(source, 'seg')
    assert all(torch.equal(saved['state_dict'][k], v) for k, v in expected.items())
    assert 'strict=True' in capsys.readouterr().out



def test_cli_stops_with_one_line_on_a_truncated_source(tmp_path):
    src = tmp_path / 'official.pkl'
    torch.save({'state_dict': authors_checkpoint('v2', 'cls')}, src)
    size = src.stat().st_size // 2
    src.write_bytes(src.read_bytes()[:size])
    with pytest.raises(SystemExit) as stop:
        load_tool().main([str(src), str(tmp_path / 'converted.pth'), '--task', 'cls'])
    message = str(stop.value)
    assert message.startswith(f'{src} ({size:,} bytes) is truncated or corrupt')
    assert '\n' not in message and not (tmp_path / 'converted.pth').exists()


IMAGENET_HEAD = dict(final_channels=2048, num_classes=1000)


@pytest.mark.slow
@pytest.mark.parametrize('task, arch, sizes', [
    ('seg', 'small', dict(num_classes=19)),
    ('seg', 'large', dict(num_classes=19)),
    ('seg', 'xl', dict(num_classes=19)),
    ('cls', 'small', dict(IMAGENET_HEAD, head_channels=(24, 48, 96, 192))),
    ('cls', 'large', dict(IMAGENET_HEAD, head_channels=(32, 64, 128, 256))),
    ('cls', 'xl', dict(IMAGENET_HEAD, head_channels=(32, 64, 128, 256))),
])
def test_each_authors_model_gets_a_shipped_config_that_loads_it_strictly(task, arch, sizes):
    preset = MDEQ.arch_settings[arch]
    source = authors_checkpoint('v1', task, channels=preset['num_channels'],
                                expansion=preset['expansion'], **sizes)
    config = load_tool().official_config(task, describe_official_checkpoint(source))
    assert config is not None and f'mdeq-{arch}_official_' in config
    cfg = Config.fromfile(config)
    converted = convert_official_checkpoint(source, task, arch=cfg.model.backbone.arch)
    load_tool().check_converted_checkpoint(converted, cfg)
    if task == 'seg':
        assert cfg.model.decode_head.align_corners
    assert cfg.model.backbone.eval_max_iter in (26, 27)


def test_no_shipped_config_for_other_models():
    layout = describe_official_checkpoint(authors_checkpoint('v2', 'cls'))
    assert load_tool().official_config('cls', layout) is None
