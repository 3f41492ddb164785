"""CapturingMap: which evaluations of a solve keep their graph, and for how long."""
import gc
import weakref

import torch

from mdeq_mm.deq.capture import CapturingMap


def test_kept_evaluations_have_their_graph_and_the_solver_gets_them_detached():
    w = torch.nn.Parameter(torch.tensor(0.5))
    f = CapturingMap(lambda z: w * z + 1, sample_steps=(1, ), end_steps=(0, 2),
                     end_input_grad=True)
    outs = []
    with torch.no_grad():
        z = torch.zeros(2, 3)
        for _ in range(4):
            z = f(z)
            outs.append(z)
    assert not any(out.requires_grad for out in outs)
    z_in, fz = f.samples[1]
    assert fz.requires_grad and not z_in.requires_grad  # a sample needs no input gradient
    step, (end_in, end_out) = f.end
    assert step == 2 and end_in.requires_grad and end_out.requires_grad
    torch.testing.assert_close(end_out.detach(), outs[2])


def test_an_end_evaluation_is_kept_only_while_it_may_be_the_last():
    w = torch.nn.Parameter(torch.tensor(0.5))
    previous_alive = []
    holder = {}

    def f(z):
        ref = holder.get('ref')
        gc.collect()
        previous_alive.append(ref is not None and ref() is not None)
        return w * z + 1

    captured = CapturingMap(f, end_steps=(0, 1, 2))
    with torch.no_grad():
        z = torch.zeros(1, 2)
        for _ in range(3):
            z = captured(z)
            holder['ref'] = weakref.ref(captured.end[1][1])
    # while evaluation i runs, the graph kept at evaluation i - 1 is already released
    assert previous_alive == [False, False, False]
    z_star = captured.end[1][0].clone()
    assert captured.end_at(z_star, nfe=3) is captured.end[1]
    assert captured.end_at(z_star, nfe=2) is None  # the solve's last evaluation was not kept
    assert captured.end_at(z_star + 1, nfe=3) is None  # z* is another state
