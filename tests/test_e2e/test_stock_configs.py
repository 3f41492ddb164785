"""The example configs that swap only the backbone of a stock mmseg / mmpretrain config train on
tiny data with the toolbox's own train tool and with ours, in one and two CPU processes, and log
the DEQ solver statistics under distinct train/val names without any hook; the HRNet baseline
(SyncBN, no CPU wrapper in its config) runs with two CPU processes too."""
import glob
import importlib.util
import json
import os.path as osp
import sys

import pytest
from mmengine.config import Config, ConfigDict

from .conftest import CROP, half_resolution

pytestmark = pytest.mark.slow
CPU_ONLY = dict(CUDA_VISIBLE_DEVICES='')
TRAIN_STATS = ('train/deq_fwd_steps', 'train/deq_fwd_rel_res', 'train/deq_bwd_steps',
               'train/deq_nonfinite_inputs')
VAL_STATS = ('val/deq_fwd_steps', 'val/deq_fwd_rel_res', 'val/deq_nonfinite_inputs')
FCN = 'mdeq/fcn_mdeq-small_4xb2-40k_cityscapes-512x1024.py'
PSPNET = 'mdeq/pspnet_mdeq-small_4xb2-40k_cityscapes-512x1024.py'
CLASSIFIER = 'mdeq/mdeq-small-gap_8xb32_in1k.py'
HRNET = 'hrnet/fcn_hr18s_1xb2-120it_cityscapes-frame-128x256.py'


def stock_train_tool(toolbox):
    """The toolbox's own tools/train.py, shipped inside its package."""
    package = importlib.util.find_spec(toolbox).submodule_search_locations[0]
    return osp.join(package, '.mim', 'tools', 'train.py')


def write(cfg, path):
    cfg.dump(str(path))
    return str(path)


def tiny_seg_config(config, data_root, path, crop=CROP):
    """``config`` on the generated scenes at half their resolution, 2 iterations, validated and
    logged at the end."""
    cfg = Config.fromfile(config)
    loaders = (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader)
    for loader in loaders:
        loader.update(num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=data_root,
                              pipeline=half_resolution(loader.dataset.pipeline))
    cfg.train_dataloader.batch_size = 2
    cfg.model.data_preprocessor.size = crop
    cfg.train_cfg.update(max_iters=2, val_interval=2)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 2
    return write(cfg, path)


def tiny_cls_config(config, data_root, path):
    """``config`` on the 32x32 pattern folders, one epoch of 6 iterations, logged every 2."""
    cfg = Config.fromfile(config)
    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
    for loader, split in ((cfg.train_dataloader, 'train'), (cfg.val_dataloader, 'val')):
        loader.update(batch_size=8, num_workers=0, persistent_workers=False)
        loader.dataset = ConfigDict(type='CustomDataset', data_root=data_root,
                                    data_prefix=split, pipeline=pipeline)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_cfg.update(max_epochs=1, val_interval=1)
    cfg.default_hooks.logger.interval = 2
    return write(cfg, path)


def scalars(work_dir):
    (path, ) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as file:
        return [json.loads(line) for line in file]


def assert_solver_stats_logged(work_dir, metric):
    lines = scalars(work_dir)
    train = [line for line in lines if 'lr' in line]
    val = [line for line in lines if metric in line]
    assert train and val, lines
    for line in train:
        assert all(key in line for key in TRAIN_STATS), line
    for line in val:
        assert all(key in line for key in VAL_STATS), line
        assert 1 <= line['val/deq_fwd_steps']
    assert not any(key.startswith('deq_') for line in lines for key in line)


@pytest.fixture
def dist_train(run_tool, free_port):
    """``dist_train(config, work_dir)``: tools/dist_train.sh with 2 CPU processes."""

    def train(config, work_dir):
        return run_tool(['tools/dist_train.sh', config, '2', '--work-dir', work_dir],
                        env=dict(CPU_ONLY, PORT=free_port, PYTHON=sys.executable))

    return train


def test_fcn_hrnet_with_mdeq_trains_with_mmsegs_own_tool(tmp_path, config_path, seg_data_root,
                                                        run_tool):
    config = tiny_seg_config(config_path(FCN), seg_data_root, tmp_path / 'cfg.py')
    work_dir = str(tmp_path / 'work')
    run_tool([stock_train_tool('mmseg'), config, '--work-dir', work_dir], env=CPU_ONLY)
    assert_solver_stats_logged(work_dir, 'mIoU')


def test_pspnet_with_mdeq_trains_with_our_tool(tmp_path, config_path, seg_data_root, run_tool):
    config = tiny_seg_config(config_path(PSPNET), seg_data_root, tmp_path / 'cfg.py')
    work_dir = str(tmp_path / 'work')
    run_tool(['tools/train.py', config, '--work-dir', work_dir], env=CPU_ONLY)
    assert_solver_stats_logged(work_dir, 'mIoU')


@pytest.mark.parametrize('name', [FCN, PSPNET])
def test_stock_segmentors_with_mdeq_train_with_two_cpu_processes(name, tmp_path, config_path,
                                                                 seg_data_root, dist_train):
    config = tiny_seg_config(config_path(name), seg_data_root, tmp_path / 'cfg.py')
    output = dist_train(config, str(tmp_path / 'work'))
    assert 'the model wrapper is CPUDistributedDataParallel' in output
    assert 'SyncBN norm config(s) of the model replaced by BN' in output
    assert_solver_stats_logged(str(tmp_path / 'work'), 'mIoU')


def test_the_classifier_with_mdeq_trains_with_mmpretrains_own_tool(tmp_path, config_path,
                                                                   cls_data_root, run_tool):
    config = tiny_cls_config(config_path(CLASSIFIER), cls_data_root, tmp_path / 'cfg.py')
    work_dir = str(tmp_path / 'work')
    run_tool([stock_train_tool('mmpretrain'), config, '--work-dir', work_dir], env=CPU_ONLY)
    assert_solver_stats_logged(work_dir, 'accuracy/top1')


def test_the_classifier_with_mdeq_trains_with_two_cpu_processes(tmp_path, config_path,
                                                                cls_data_root, dist_train):
    config = tiny_cls_config(config_path(CLASSIFIER), cls_data_root, tmp_path / 'cfg.py')
    output = dist_train(config, str(tmp_path / 'work'))
    assert 'the model wrapper is CPUDistributedDataParallel' in output
    assert_solver_stats_logged(str(tmp_path / 'work'), 'accuracy/top1')


def test_the_hrnet_baseline_trains_with_two_cpu_processes(tmp_path, config_path, seg_data_root,
                                                         dist_train):
    config = tiny_seg_config(config_path(HRNET), seg_data_root, tmp_path / 'cfg.py', crop=(64, 128))
    output = dist_train(config, str(tmp_path / 'work'))
    assert 'SyncBN norm config(s) of the model replaced by BN' in output
    assert (tmp_path / 'work' / 'iter_2.pth').exists()
