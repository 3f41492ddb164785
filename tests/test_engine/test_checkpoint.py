"""Local checkpoints load with weights_only=True plus mmengine's own types; others are refused."""
import pickle

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import CheckpointLoader
from torch.utils.data import Dataset

from mdeq_mm.engine.checkpoint import TRUST_ENV, UnreadableCheckpointError


class ToyData(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, idx):
        x = torch.full((2, ), float(idx))
        return dict(inputs=x, target=x.sum(0, keepdim=True))


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, target, mode='loss'):
        inputs, target = torch.stack(inputs), torch.stack(target)
        loss = ((self.linear(inputs) - target)**2).mean()
        return dict(loss=loss) if mode == 'loss' else [loss]


def make_runner(work_dir, max_iters, resume):
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=ToyData(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        resume=resume,
        randomness=dict(seed=0),
        default_scope='mmengine')


def test_plain_torch_load_rejects_mmengine_checkpoints(tmp_path):
    """The breakage being fixed: torch's weights_only default refuses these files."""
    make_runner(tmp_path, max_iters=2, resume=False).train()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / 'iter_2.pth')


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    straight = make_runner(tmp_path / 'straight', max_iters=4, resume=False)
    straight.train()

    make_runner(tmp_path / 'split', max_iters=2, resume=False).train()
    resumed = make_runner(tmp_path / 'split', max_iters=4, resume=True)
    resumed.train()

    assert resumed.iter == 4
    for name, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value)


class CreatesFile:
    """Unpickling calls ``open(path, 'w')``: stands for any code a crafted file could run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, 'w')


class LegacyMeta:
    """An importable class that a trusted legacy checkpoint may hold."""

    def __init__(self, note):
        self.note = note


def test_malicious_checkpoint_is_refused_and_its_payload_never_runs(tmp_path, monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    marker = tmp_path / 'payload_ran'
    path = tmp_path / 'malicious.pth'
    torch.save(dict(state_dict=nn.Linear(2, 1).state_dict(), meta=CreatesFile(marker)), path)
    with pytest.raises(pickle.UnpicklingError, match=rf'GLOBAL io\.open\b.*set {TRUST_ENV}=1'):
        CheckpointLoader.load_checkpoint(str(path))
    assert not marker.exists()


def test_trusted_legacy_checkpoint_loads_with_the_opt_in(tmp_path, monkeypatch):
    path = tmp_path / 'legacy.pth'
    torch.save(dict(state_dict=nn.Linear(2, 1).state_dict(), meta=LegacyMeta('old')), path)
    monkeypatch.delenv(TRUST_ENV, raising=False)
    with pytest.raises(pickle.UnpicklingError, match='LegacyMeta'):
        CheckpointLoader.load_checkpoint(str(path))
    monkeypatch.setenv(TRUST_ENV, '1')
    assert CheckpointLoader.load_checkpoint(str(path))['meta'].note == 'old'


def test_trust_variable_with_another_value_is_named(tmp_path, monkeypatch):
    path = tmp_path / 'weights.pth'
    torch.save(nn.Linear(2, 1).state_dict(), path)
    monkeypatch.setenv(TRUST_ENV, 'yes')
    with pytest.raises(ValueError, match=f"{TRUST_ENV}.*'yes'"):
        CheckpointLoader.load_checkpoint(str(path))


@pytest.mark.parametrize('trusted', ['0', '1'])
@pytest.mark.parametrize('keep', [0.0, 0.02, 0.5, 0.99])
def test_truncated_checkpoint_is_one_line_naming_the_path_and_size(tmp_path, monkeypatch, keep,
                                                                   trusted):
    """What an interrupted save or download leaves: a real mmengine checkpoint, cut short."""
    make_runner(tmp_path, max_iters=2, resume=False).train()
    data = (tmp_path / 'iter_2.pth').read_bytes()
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(data[:int(len(data) * keep)])
    monkeypatch.setenv(TRUST_ENV, trusted)
    with pytest.raises(UnreadableCheckpointError) as err:
        CheckpointLoader.load_checkpoint(str(cut))
    message = str(err.value)
    assert '\n' not in message
    assert message.startswith(f'{cut} ({int(len(data) * keep):,} bytes')
    assert 'truncated or corrupt' in message
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_legacy_format_checkpoint_cut_short_is_unreadable_too(tmp_path):
    path = tmp_path / 'legacy.pth'
    torch.save(dict(state_dict=nn.Linear(64, 64).state_dict()), path,
               _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UnreadableCheckpointError, match=r'legacy\.pth \([0-9,]+ bytes\)'):
        CheckpointLoader.load_checkpoint(str(path))
