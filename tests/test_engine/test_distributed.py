"""The gloo process group that ``init_cpu_process_group`` starts is finished at exit."""
import pytest

# The first exit handler registered runs last: it sees what the group's handler left.
SCRIPT = """
import atexit, sys
import torch
import torch.distributed as dist
atexit.register(lambda: print('group initialized at exit:', dist.is_initialized()))
from mdeq_mm.engine import init_cpu_process_group
assert init_cpu_process_group()
dist.all_reduce(torch.ones(2))
if sys.argv[1] == 'raise':
    raise RuntimeError('failed run')
"""


@pytest.mark.parametrize('ending, succeed, destroyed', [('return', True, True),
                                                        ('raise', False, False)])
def test_group_is_destroyed_at_exit_unless_an_exception_ends_the_process(
        run_tool, free_port, ending, succeed, destroyed):
    env = dict(CUDA_VISIBLE_DEVICES='', RANK='0', LOCAL_RANK='0', WORLD_SIZE='1',
               MASTER_ADDR='127.0.0.1', MASTER_PORT=free_port)
    output = run_tool(['-c', SCRIPT, ending], timeout=120, env=env, succeed=succeed)
    assert f'group initialized at exit: {not destroyed}' in output
