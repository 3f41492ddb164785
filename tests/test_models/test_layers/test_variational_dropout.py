import pytest
import torch

from mdeq_mm.models.layers import VariationalDropout2d


def test_same_mask_at_every_call_within_one_forward():
    torch.manual_seed(0)
    drop = VariationalDropout2d(0.5)
    x = torch.rand(4, 16, 5, 3) + 1
    drop.reset_mask(x)
    first = drop(x)
    torch.testing.assert_close(drop(x), first)
    # Whole channels are either dropped or scaled by 1 / (1 - p).
    ratio = first / x
    assert torch.all(ratio == ratio[..., :1, :1])
    assert set(ratio.unique().tolist()) == {0.0, 2.0}
    assert drop.mask.shape == (4, 16, 1, 1)


def test_reset_samples_a_new_mask():
    torch.manual_seed(0)
    drop = VariationalDropout2d(0.5)
    x = torch.ones(4, 64, 2, 2)
    drop.reset_mask(x)
    first = drop(x)
    drop.reset_mask(x)
    assert not torch.equal(drop(x), first)


def test_mask_is_scaled_to_keep_the_mean_activation():
    torch.manual_seed(0)
    drop = VariationalDropout2d(0.3)
    drop.reset_mask(torch.empty(64, 256))
    assert abs(drop.mask.mean().item() - 1.0) < 0.05


def test_identity_in_eval_and_for_zero_p():
    x = torch.rand(2, 8, 4, 4)
    drop = VariationalDropout2d(0.5).eval()
    drop.reset_mask(x)
    assert drop.mask is None
    assert drop(x) is x
    no_drop = VariationalDropout2d(0.0)
    no_drop.reset_mask(x)
    assert no_drop(x) is x


@pytest.mark.parametrize('device,dtype', [('cpu', torch.float64),
                                          ('meta', torch.float16)])
def test_mask_follows_reference_device_and_dtype(device, dtype):
    drop = VariationalDropout2d(0.2)
    drop.reset_mask(torch.empty(3, 5, 4, 4, device=device, dtype=dtype))
    assert drop.mask.device.type == device
    assert drop.mask.dtype == dtype


def test_batch_size_mismatch_raises():
    drop = VariationalDropout2d(0.2)
    drop.reset_mask(torch.rand(2, 4, 3, 3))
    with pytest.raises(ValueError, match='batch size 2'):
        drop(torch.rand(3, 4, 3, 3))


def test_training_forward_without_mask_raises():
    with pytest.raises(RuntimeError, match='reset_mask'):
        VariationalDropout2d(0.2)(torch.rand(2, 4, 3, 3))


@pytest.mark.parametrize('p', [-0.1, 1.0])
def test_a_probability_outside_0_to_1_is_refused_with_its_value(p):
    with pytest.raises(ValueError, match=str(p)):
        VariationalDropout2d(p)
