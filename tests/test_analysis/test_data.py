"""The synthetic batches: generated scenes as normalized inputs with matching ground truth."""
import numpy as np
import torch

from mdeq_mm.analysis import build_model, generated_scenes, load_config, make_batch, mdeq_budgets


def test_segmentation_batch_carries_the_scene_labels_and_normalized_images(demo_config):
    model = build_model(load_config(demo_config), mdeq_budgets('implicit', 2))
    images, labels = generated_scenes(2, 32, 64)
    inputs, samples = make_batch(model, images, labels)
    assert inputs.shape == (2, 3, 32, 64)
    assert abs(float(inputs.mean())) < 2.0  # normalized, not 0-255
    for sample, label in zip(samples, labels):
        assert torch.equal(sample.gt_sem_seg.data[0], torch.from_numpy(label).long())
        assert sample.metainfo['img_shape'] == (32, 64)
    loss, _ = model.parse_losses(model.loss(inputs, samples))
    assert torch.isfinite(loss)


def test_images_without_labels_get_fixed_labels_of_valid_classes(demo_config):
    model = build_model(load_config(demo_config))
    images = np.zeros((1, 32, 64, 3), dtype=np.uint8)
    first = make_batch(model, images)[1][0].gt_sem_seg.data
    again = make_batch(model, images)[1][0].gt_sem_seg.data
    assert torch.equal(first, again)
    assert 0 <= int(first.min()) and int(first.max()) < model.decode_head.num_classes


def test_budget_overrides_reach_the_backbone(demo_config):
    model = build_model(load_config(demo_config), mdeq_budgets('implicit', 7, 3))
    assert model.backbone.deq.forward_cfg.max_iter == 7
    assert model.backbone.deq.backward_cfg.solver.max_iter == 3
    unrolled = build_model(load_config(demo_config), mdeq_budgets('unrolled', 4))
    assert unrolled.backbone.deq_mode == 'unrolled' and unrolled.backbone.deq.n_layers == 4
