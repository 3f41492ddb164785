"""mmseg end to end: MDEQ trains with the stock CityscapesDataset, pipeline and IoUMetric."""
import os.path as osp
import re

import pytest


pytestmark = pytest.mark.slow


def logged_losses(output):
    return [float(v) for v in re.findall(r'Iter\(train\) .*? loss: ([0-9.]+)', output)]


def test_train_validate_checkpoint_and_resume(tmp_path, seg_config, run_tool):
    work_dir = tmp_path / 'work'
    config = seg_config(tmp_path / 'cfg.py', max_iters=24)
    output = run_tool(['tools/train.py', config, '--work-dir', str(work_dir)])

    losses = logged_losses(output)
    assert len(losses) >= 6, output[-3000:]
    assert sum(losses[-2:]) < 0.8 * sum(losses[:2]), losses
    miou = re.findall(r'mIoU: ([0-9.]+)', output)
    assert miou and 0.0 <= float(miou[-1]) <= 100.0, output[-3000:]
    assert (work_dir / 'iter_24.pth').exists()

    longer = seg_config(tmp_path / 'cfg_longer.py', max_iters=32)
    resumed = run_tool(['tools/train.py', longer, '--work-dir', str(work_dir), '--resume'])
    iters = [int(i) for i in re.findall(r'Iter\(train\) \[\s*(\d+)/32\]', resumed)]
    assert iters and min(iters) > 24 and max(iters) == 32, iters
    assert 'resumed' in resumed.lower() or 'Load checkpoint' in resumed
    assert (work_dir / 'iter_32.pth').exists()

    # mmpretrain's form: --resume CHECKPOINT, here into another work_dir (nothing to auto-resume)
    shorter = seg_config(tmp_path / 'cfg_shorter.py', max_iters=16)
    from_file = run_tool(['tools/train.py', shorter, '--work-dir', str(tmp_path / 'other'),
                          '--resume', str(work_dir / 'iter_12.pth')])
    iters = [int(i) for i in re.findall(r'Iter\(train\) \[\s*(\d+)/16\]', from_file)]
    assert iters and min(iters) > 12 and max(iters) == 16, iters
    assert re.search(r'resumed epoch: \d+, iter: 12\b', from_file), from_file[-3000:]


def test_config_runs_with_mmsegs_own_train_tool(tmp_path, seg_config, run_tool):
    import mmseg
    stock_train = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', 'train.py')
    config = seg_config(tmp_path / 'cfg.py', max_iters=4)
    output = run_tool([stock_train, config, '--work-dir', str(tmp_path / 'work')])
    assert re.search(r'Iter\(train\) \[\s*4/4\]', output), output[-3000:]
    assert (tmp_path / 'work' / 'iter_4.pth').exists()
