import pytest
import torch

from mdeq_mm.deq import StatePacker


def _state(batch=3):
    return (torch.randn(batch, 2, 4, 4), torch.randn(batch, 3, 2, 2), torch.randn(batch, 5))


def test_pack_then_unpack_restores_every_tensor():
    state = _state()
    packer = StatePacker(state)
    flat = packer.pack(state)
    assert flat.shape == (3, 32 + 12 + 5) and packer.dim == 49
    for original, restored in zip(state, packer.unpack(flat)):
        assert restored.shape == original.shape
        assert torch.equal(restored, original)


def test_unpack_returns_views_and_gradients_flow_both_ways():
    state = tuple(t.requires_grad_() for t in _state())
    packer = StatePacker(state)
    flat = packer.pack(state)
    parts = packer.unpack(flat)
    assert parts[1].untyped_storage().data_ptr() == flat.untyped_storage().data_ptr()
    sum((i + 1) * p.sum() for i, p in enumerate(parts)).backward()
    for i, t in enumerate(state):
        assert torch.equal(t.grad, torch.full_like(t, i + 1.0))


def test_shape_mismatches_raise_clear_errors():
    packer = StatePacker(_state())
    with pytest.raises(ValueError, match='tensor 1'):
        packer.pack((torch.zeros(3, 2, 4, 4), torch.zeros(3, 3, 4, 4), torch.zeros(3, 5)))
    with pytest.raises(ValueError, match='expected 3 tensors'):
        packer.pack((torch.zeros(3, 2, 4, 4), ))
    with pytest.raises(ValueError, match=r'\(B, 49\)'):
        packer.unpack(torch.zeros(3, 48))
    with pytest.raises(ValueError, match='batch dimension'):
        StatePacker((torch.zeros(2, 3), torch.zeros(3, 3)))


@pytest.mark.filterwarnings('ignore::torch.jit.TracerWarning', 'ignore:.*torch.jit.trace')
def test_packing_traces_and_the_trace_keeps_the_batch_size_free():
    # under torch.jit.trace (FLOP counters, ONNX export) every size is a 0-dim tensor
    def double(a, b):
        packer = StatePacker((a, b))
        return packer.unpack(packer.pack((a, b)) * 2)

    traced = torch.jit.trace(double, _state(batch=2)[:2])
    state = _state(batch=3)[:2]
    for got, want in zip(traced(*state), double(*state)):
        assert got.shape == want.shape and torch.equal(got, want)
