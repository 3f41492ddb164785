"""The variants of f the benchmark times compute what eager f computes."""
import torch

from mdeq_mm.analysis.f_speed import f_evaluations
from mdeq_mm.models import MDEQ


def test_channels_last_f_gives_eager_outputs_and_vector_jacobian_products():
    torch.manual_seed(0)
    mdeq = MDEQ(arch=dict(num_channels=(8, 16), expansion=2),
                forward_solver=dict(type='broyden', max_iter=6, tol=1e-3))
    variants = f_evaluations(mdeq, torch.rand(2, 3, 32, 32))
    assert set(variants) == {'eager', 'channels_last'}
    for kind in ('forward', 'forward_vjp'):
        eager = variants['eager'][kind]()
        channels_last = variants['channels_last'][kind]()
        assert len(eager) == len(channels_last) == 2
        for a, b in zip(eager, channels_last):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
