"""VideoWarmStart: one equilibrium per stream, reset on size change, cut or request."""
import pytest
import torch

from mdeq_mm.apis import VideoWarmStart
from mdeq_mm.models import MDEQ

TINY = dict(num_channels=(8, 16), expansion=2)
# a relative residual an untrained MDEQ reaches from zeros in a few Broyden steps
LOOSE_TOL = 0.9


@pytest.fixture
def model():
    torch.manual_seed(0)
    return MDEQ(arch=TINY, forward_solver=dict(type='broyden', max_iter=20, tol=LOOSE_TOL)).eval()


def frames(num, size=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(1, 3, size, size, generator=gen) for _ in range(num)]


def run(model, warm_start, streams, images):
    with torch.no_grad(), warm_start.next_frames(streams):
        return model(torch.cat(images))


def assert_same(outs, expected, index=0):
    for out, exp in zip(outs, expected):
        torch.testing.assert_close(out[index:index + 1], exp)


def test_first_frame_equals_single_image_inference(model):
    (image, ) = frames(1)
    with torch.no_grad():
        expected = model(image)
    outs = run(model, VideoWarmStart(model), ['cam'], [image])
    for out, exp in zip(outs, expected):
        assert torch.equal(out, exp)


def test_streams_do_not_leak_into_each_other_across_batches(model):
    a1, a2, b1, b2, c1 = frames(5)
    alone = {}
    for name, (first, second) in {'a': (a1, a2), 'b': (b1, b2)}.items():
        warm_start = VideoWarmStart(model)
        run(model, warm_start, [name], [first])
        alone[name] = run(model, warm_start, [name], [second])

    warm_start = VideoWarmStart(model)
    run(model, warm_start, ['a', 'b'], [a1, b1])
    kept_a = warm_start.state('a')
    # a batch of another stream starts cold and leaves a and b alone
    with torch.no_grad():
        cold_c = model(c1)
    assert_same(run(model, warm_start, ['c'], [c1]), cold_c)
    assert all(torch.equal(s, k) for s, k in zip(warm_start.state('a'), kept_a))
    # the streams in another order each continue from their own state
    outs = run(model, warm_start, ['b', 'a'], [b2, a2])
    assert_same(outs, alone['b'], index=0)
    assert_same(outs, alone['a'], index=1)
    assert warm_start.streams == ('a', 'b', 'c')


def test_a_new_stream_beside_warm_ones_starts_cold(model):
    a1, a2, d1 = frames(3)
    warm_start = VideoWarmStart(model)
    run(model, warm_start, ['a'], [a1])
    with torch.no_grad():
        cold_d = model(d1)
    outs = run(model, warm_start, ['a', 'd'], [a2, d1])
    assert_same(outs, cold_d, index=1)


def test_reset_and_size_change_start_cold(model):
    a1, a2 = frames(2)
    (big, ) = frames(1, size=64, seed=1)
    warm_start = VideoWarmStart(model)
    run(model, warm_start, ['a'], [a1])
    warm_start.reset('a')
    assert warm_start.state('a') is None
    with torch.no_grad():
        cold_a2, cold_big = model(a2), model(big)
    assert_same(run(model, warm_start, ['a'], [a2]), cold_a2)
    assert_same(run(model, warm_start, ['a'], [big]), cold_big)
    assert tuple(warm_start.state('a')[0].shape[-2:]) == (16, 16)


def test_a_scene_cut_replaces_the_state_with_the_cold_equilibrium(model):
    a1, a2 = frames(2)
    warm_start = VideoWarmStart(model)
    run(model, warm_start, ['a'], [a1])
    # a state no better than zeros, as a cut to an unrelated scene gives
    warm_start._states['a'] = warm_start._states['a']._replace(
        state=tuple(1e3 * torch.ones_like(z) for z in warm_start.state('a')))
    with torch.no_grad():
        cold = model(a2)
    outs = run(model, warm_start, ['a'], [a2])
    assert warm_start.last_cold_restart.tolist() == [True]
    assert_same(outs, cold)
    assert all(torch.equal(s, c) for s, c in zip(warm_start.state('a'), outs))


def test_misuse_is_refused_with_the_bad_value(model):
    warm_start = VideoWarmStart(model)
    a1, b1 = frames(2)
    with pytest.raises(ValueError, match=r"\['a', 'a'\]"):
        run(model, warm_start, ['a', 'a'], [a1, b1])
    with pytest.raises(ValueError, match='2 images but 1 streams'):
        run(model, warm_start, ['a'], [a1, b1])
    with pytest.raises(ValueError, match='call 2'), torch.no_grad(), \
            warm_start.next_frames(['a']):
        model(a1)
        model(a1)
    with pytest.raises(ValueError, match='MDEQ'):
        VideoWarmStart(torch.nn.Linear(2, 2))
    model.train()
    with pytest.raises(ValueError, match='eval'), warm_start.next_frames(['a']):
        pass
