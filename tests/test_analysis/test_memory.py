"""The live-tensor memory probe counts what is allocated and freed, not what existed."""
import torch

from mdeq_mm.analysis import LiveTensorBytes, peak_tensor_bytes, tensor_bytes


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
