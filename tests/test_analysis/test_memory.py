"""The live-tensor memory probe counts what is allocated and freed, not what existed."""
import torch

from mdeq_mm.analysis import (LiveTensorBytes, build_model, generated_scenes, load_config,
                              make_batch, mdeq_budgets, peak_tensor_bytes, tensor_bytes)
from mdeq_mm.models.layers import WeightNormConv2d


def test_probe_counts_a_known_allocation_and_its_release():
    with LiveTensorBytes() as probe:
        x = torch.empty(1000, dtype=torch.float32)
        y = torch.empty(500, dtype=torch.float64)
        peak_both = probe.peak
        del x, y
    assert peak_both == 4000 + 4000
    assert probe.live == 0


def test_peak_is_the_largest_simultaneous_total_not_the_sum():
    with LiveTensorBytes() as probe:
        for _ in range(3):
            x = torch.empty(1024)
            del x
    assert probe.peak == 4096


def test_views_and_in_place_ops_add_nothing():
    with LiveTensorBytes() as probe:
        x = torch.zeros(256)
        x.add_(1.0)
        view = x[:10].view(2, 5)
        assert probe.live == 1024
        del view
    assert probe.peak == 1024


def test_tensors_from_before_are_not_counted():
    before = torch.zeros(10_000)
    with LiveTensorBytes() as probe:
        before.mul_(2.0)
        after = before[:5].clone()
    assert probe.peak == after.untyped_storage().nbytes() == 20


def test_peak_tensor_bytes_of_a_backward_pass_includes_its_gradients():
    weight = torch.randn(64, 64, requires_grad=True)
    with peak_tensor_bytes(torch.device('cpu')) as peak:
        (weight @ weight).sum().backward()
    assert peak['peak'] >= tensor_bytes([weight.grad])


def test_a_training_step_leaves_no_copy_of_the_normalized_weights_alive(demo_config):
    # after the backward the gradients stay, and small state until the next forward (solver
    # statistics, the Jacobian loss with its leaf); the weight-norm cache would add a copy of
    # f's weights
    model = build_model(load_config(demo_config), mdeq_budgets('implicit', 3))
    inputs, samples = make_batch(model, *generated_scenes(2, 64, 128))
    model.train()
    weights = tensor_bytes([m.weight_v for m in model.modules()
                            if isinstance(m, WeightNormConv2d)])
    with LiveTensorBytes() as probe:
        loss, _ = model.parse_losses(model.loss(inputs, samples))
        loss.backward()
        del loss
        grads = tensor_bytes([p.grad for p in model.parameters() if p.grad is not None])
        kept = probe.live - grads
    assert weights > 0 and 0 <= kept < 0.5 * weights
