"""The real digits load through mmpretrain's stock CustomDataset, split by class and seed."""
import numpy as np
import pytest
from mmpretrain.datasets import CustomDataset
from mmpretrain.utils import register_all_modules

from mdeq_mm.datasets import DIGIT_CLASSES, write_digits_dataset


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('digits'))
    counts = write_digits_dataset(root, img_size=16)
    assert counts == {'train': 1347, 'test': 450}
    return root


def test_stock_custom_dataset_reads_every_class_in_both_splits(data_root):
    register_all_modules()
    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
    for split, size in (('train', 1347), ('test', 450)):
        dataset = CustomDataset(data_root=data_root, data_prefix=split, classes=DIGIT_CLASSES,
                                pipeline=pipeline)
        assert len(dataset) == size
        labels = np.array([dataset.get_data_info(i)['gt_label'] for i in range(size)])
        # stratified: every class holds about a tenth of each split
        assert np.bincount(labels, minlength=10).min() >= size // 10 - 5
        sample = dataset[0]
        assert tuple(sample['inputs'].shape) == (3, 16, 16)


def test_upscaling_keeps_each_source_pixel_as_a_block(tmp_path):
    from PIL import Image
    write_digits_dataset(str(tmp_path), img_size=32)
    path = next((tmp_path / 'test' / '0').iterdir())
    image = np.asarray(Image.open(path))
    assert image.shape == (32, 32, 3)
    blocks = image[..., 0].reshape(8, 4, 8, 4)
    assert (blocks == blocks[:, :1, :, :1]).all()
    assert image.max() > 200 and image.min() == 0


@pytest.mark.parametrize('kwargs,message', [
    (dict(img_size=12), 'img_size must be a positive multiple of 8, got 12'),
    (dict(test_ratio=1.0), r'test_ratio must be in \(0, 1\), got 1.0'),
])
def test_bad_arguments_name_the_value(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_digits_dataset(str(tmp_path), **kwargs)
