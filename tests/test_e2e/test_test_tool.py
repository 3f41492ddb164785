"""tools/test.py: mmseg's visualization and TTA arguments for seg and cls configs, strict
checkpoint loading, and the converted official checkpoints with their shipped configs."""
import glob
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from ..authors_checkpoints import authors_checkpoint

pytestmark = pytest.mark.slow
MIOU = re.compile(r'mIoU: [0-9.]+')
TOP1 = re.compile(r'accuracy/top1: [0-9.]+')
SMALL = dict(channels=(32, 64, 128, 256), expansion=5)


def save_initialized_checkpoint(config, path):
    """The freshly initialized model of ``config`` as an mmengine checkpoint."""
    cfg = Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.save(dict(meta=dict(), state_dict=model.state_dict()), path)
    return str(path)


@pytest.fixture(scope='module')
def seg(tmp_path_factory, seg_config):
    root = tmp_path_factory.mktemp('seg')
    config = seg_config(root / 'seg.py', max_iters=12)
    return config, save_initialized_checkpoint(config, root / 'seg.pth')


@pytest.fixture(scope='module')
def cls(tmp_path_factory, cls_config):
    root = tmp_path_factory.mktemp('cls')
    cfg = cls_config(str(root / 'work'))
    cfg.merge_from_dict(dict(
        test_dataloader=cfg.val_dataloader, test_evaluator=cfg.val_evaluator, test_cfg=dict(),
        default_hooks=dict(visualization=dict(type='VisualizationHook')),
        visualizer=dict(type='UniversalVisualizer', vis_backends=[dict(type='LocalVisBackend')])))
    config = str(root / 'cls.py')
    cfg.dump(config)
    return config, save_initialized_checkpoint(config, root / 'cls.pth')


def seg_test_images(seg_data_root):
    return glob.glob(osp.join(seg_data_root, 'leftImg8bit', 'val', '*', '*.png'))


@pytest.mark.parametrize('tta', [False, True])
def test_show_dir_paints_every_seg_test_image_by_default(seg, seg_data_root, tmp_path, run_tool,
                                                         tta):
    # mmseg's hook paints every 50th batch: on a test set of fewer, nothing
    config, checkpoint = seg
    run_tool(['tools/test.py', config, checkpoint, '--work-dir', str(tmp_path / 'work'),
              '--show-dir', str(tmp_path / 'show'), *(['--tta'] if tta else [])])
    painted = glob.glob(str(tmp_path / 'show' / 'vis_data' / 'vis_image' / '*.png'))
    images = seg_test_images(seg_data_root)
    assert len(images) >= 2 and len(painted) == len(images), painted


def test_interval_paints_every_interval_th_seg_batch(seg, tmp_path, run_tool):
    config, checkpoint = seg
    run_tool(['tools/test.py', config, checkpoint, '--work-dir', str(tmp_path / 'work'),
              '--show-dir', str(tmp_path / 'show'), '--interval', '2'])
    painted = glob.glob(str(tmp_path / 'show' / 'vis_data' / 'vis_image' / '*.png'))
    assert len(painted) == 1, painted  # the second of the 2 one-image batches

    out = run_tool(['tools/test.py', config, checkpoint, '--work-dir', str(tmp_path / 'work'),
                    '--show-dir', str(tmp_path / 'none'), '--interval', '5'])
    assert '--interval 5 paints nothing: the test set has 2 batches' in out, out[-3000:]


def test_show_dir_writes_a_painted_image_per_cls_sample(cls, tmp_path, run_tool):
    config, checkpoint = cls
    run_tool(['tools/test.py', config, checkpoint, '--work-dir', str(tmp_path / 'work'),
              '--show-dir', str(tmp_path / 'show')])
    # mmpretrain names them <image name>_<step>.png: the 3 class folders share 0.png ... 3.png
    painted = {path.name for path in (tmp_path / 'show').iterdir()}
    assert painted == {f'{i}.png_0.png' for i in range(4)}


def test_tta_with_show_dir_is_refused_for_cls_configs_before_testing(cls, tmp_path, run_tool):
    config, checkpoint = cls
    refused = run_tool(['tools/test.py', config, checkpoint, '--work-dir', str(tmp_path / 'work'),
                        '--show-dir', str(tmp_path / 'show'), '--tta'], succeed=False)
    assert '--tta cannot be combined with --show / --show-dir' in refused, refused[-3000:]
    assert 'Traceback' not in refused and not TOP1.search(refused)
    assert not (tmp_path / 'work').exists()


def test_head_left_with_other_channels_is_named_before_testing(seg, tmp_path, run_tool):
    config, checkpoint = seg
    refused = run_tool(['tools/test.py', config, checkpoint, '--work-dir', str(tmp_path / 'work'),
                        '--cfg-options', 'model.decode_head.in_channels=[18,36,72]'],
                       succeed=False)
    assert ('model.decode_head (FCNHead) takes 126 channels, but the MDEQ backbone gives 112'
            in refused), refused[-3000:]
    assert 'Write model.decode_head.in_channels=[16, 32, 64]' in refused
    assert 'Traceback' not in refused


def run_with_tta(run_tool, config_and_checkpoint, work_dir):
    """``tools/test.py --tta``: its output and the config it tested."""
    config, checkpoint = config_and_checkpoint
    out = run_tool(['tools/test.py', config, checkpoint, '--work-dir', str(work_dir), '--tta'])
    (dumped, ) = glob.glob(str(work_dir / '*' / 'vis_data' / 'config.py'))
    return out, Config.fromfile(dumped)


def test_tta_tests_the_seg_config_tta_model_and_pipeline(seg, tmp_path, run_tool):
    out, tested = run_with_tta(run_tool, seg, tmp_path)
    assert MIOU.search(out), out[-3000:]
    assert tested.model.type == 'SegTTAModel'
    assert tested.test_dataloader.dataset.pipeline[1].type == 'TestTimeAug'


def test_tta_defaults_to_flip_tta_for_cls_configs(cls, tmp_path, run_tool):
    out, tested = run_with_tta(run_tool, cls, tmp_path)
    assert TOP1.search(out), out[-3000:]
    assert tested.model.type == 'mmpretrain.AverageClsScoreTTA'
    assert tested.test_dataloader.dataset.pipeline[-1].type == 'TestTimeAug'


def test_checkpoint_of_another_model_is_refused_unless_partial_load_is_allowed(
        seg, cls, tmp_path, run_tool):
    config, _ = seg
    _, other = cls
    refused = run_tool(['tools/test.py', config, other, '--work-dir', str(tmp_path / 'refused')],
                       succeed=False)
    counts = re.search(r'does not fit the model: (\d+) missing, (\d+) unexpected and (\d+) '
                       r'mis-shaped key', refused)
    assert counts and all(int(n) > 0 for n in counts.groups()), refused[-3000:]
    assert 'unexpected: neck.incre_modules.0.0.conv1.weight' in refused
    assert ('mis-shaped: backbone.stem.0.weight: checkpoint [8, 3, 3, 3], model [16, 3, 3, 3]'
            in refused)
    assert '--allow-partial-load' in refused and not MIOU.search(refused)
    assert 'size mismatch' not in refused and 'do not match exactly' not in refused
    summary = refused[refused.index(f'{other} does not fit the model'):]
    assert len(summary.splitlines()) <= 5, summary  # mmengine printed a line per key

    cut = tmp_path / 'cut.pth'
    cut.write_bytes(open(other, 'rb').read()[:1000])
    truncated = run_tool(['tools/test.py', config, str(cut), '--work-dir', str(tmp_path / 'cut')],
                         succeed=False)
    assert f'{cut} (1,000 bytes) is truncated or corrupt' in truncated, truncated[-3000:]
    assert 'Traceback' not in truncated

    partial = run_tool(['tools/test.py', config, other, '--work-dir', str(tmp_path / 'partial'),
                        '--allow-partial-load'])
    assert MIOU.search(partial), partial[-3000:]


def official_test_config(path, config, data):
    """``config`` with only its test data replaced by generated data."""
    path.write_text(f'_base_ = {config!r}\n{data}')
    return str(path)


@pytest.mark.parametrize('task, sizes, expected', [
    ('seg', dict(SMALL, num_classes=19), 'fcn_mdeq-small_official_cityscapes-512x1024.py'),
    ('cls', dict(SMALL, head_channels=(24, 48, 96, 192), final_channels=2048, num_classes=1000),
     'mdeq-small_official_in1k.py'),
])
def test_converted_official_checkpoint_loads_strictly_into_the_printed_config(
        task, sizes, expected, tmp_path, seg_data_root, cls_data_root, config_path, run_tool):
    # Shaped like the published files: v1 layout, the Cityscapes ones behind 'model.'.
    source = authors_checkpoint('v1', task, **sizes)
    prefix = 'model.' if task == 'seg' else ''
    src, dst = tmp_path / 'official.pth', tmp_path / 'converted.pth'
    torch.save({'state_dict': {prefix + k: v for k, v in source.items()}}, src)
    converted = run_tool(['tools/model_converters/convert_mdeq_checkpoint.py', str(src), str(dst),
                          '--task', task])
    printed = re.search(r'config for it: (\S+)', converted).group(1)
    assert printed.endswith(expected)

    if task == 'seg':
        data = f"""
test_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(
    data_root={seg_data_root!r},
    pipeline=[dict(type='LoadImageFromFile'), dict(type='Resize', scale=(128, 64), keep_ratio=True),
              dict(type='LoadAnnotations'), dict(type='PackSegInputs')]))
"""
    else:
        data = f"""
test_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(
    _delete_=True, type='CustomDataset', data_root={cls_data_root!r}, data_prefix='val',
    pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')]))
"""
    config = official_test_config(tmp_path / 'test_cfg.py', config_path(f'mdeq/{expected}'), data)
    tested = run_tool(['tools/test.py', config, str(dst), '--work-dir', str(tmp_path / 'work')])
    assert (MIOU if task == 'seg' else TOP1).search(tested), tested[-3000:]
    assert 'do not match exactly' not in tested
