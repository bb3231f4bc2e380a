"""The training step waits for the GPU only where it must (issue 32, item 7).

A read of a device tensor on the host (``.item()``, ``float()``, ``bool()``, ``.any()`` in an ``if``)
stalls the host until the GPU has finished everything queued before it. On a CPU nothing is queued, so these
tests find such reads without a GPU: the augmentation runs on the ``meta`` device, whose tensors have no
values and raise on any read, and the training loss is a tensor subclass that counts the reads of itself and
of everything computed from it.
On a GPU, ``torch.cuda.set_sync_debug_mode("error")`` checks the augmentation itself.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import model.train.loop as loop
from dataset.transform import ClipAugment, mixup_clips
from model.train.dist import Dist
from model.train.inputs import FrameInputs, Loaders
from model.train.loop import Trainer
from model.train.options import TrainOptions

# ---- augmentation


def _augment_and_mix(clips: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    augment = ClipAugment(crop_hw=(16, 16), flip_p=0.5, jitter_p=0.5, blur_p=0.5)
    generator = torch.Generator().manual_seed(seed)
    out, flipped = augment(clips, generator)
    n, t = out.shape[:2]
    targets = torch.zeros(n, t, 3, device=clips.device)
    team = torch.zeros(n, t, 2, device=clips.device)
    mixed, _, _, _ = mixup_clips(out, targets, team, torch.ones_like(team), generator)
    return out, flipped, mixed


def test_augmentation_decides_on_its_cpu_draws_and_never_reads_the_clips():
    # Meta tensors hold no values: bool(), .item() or .nonzero() of one raises, so any decision taken on the
    # device (a sync on a GPU) fails here. Several seeds and probabilities of 1/2 take every branch both ways.
    clips = torch.empty(6, 4, 3, 20, 30, device="meta")
    for seed in range(4):
        out, flipped, mixed = _augment_and_mix(clips, seed)
        assert out.device.type == flipped.device.type == mixed.device.type == "meta"
        assert out.shape == mixed.shape == (6, 4, 3, 16, 16) and flipped.shape == (6,)


def test_the_hue_rotation_inverts_no_matrix_per_batch(monkeypatch):
    augment = ClipAugment(jitter_p=1.0, blur_p=0.0)
    clips = torch.rand(3, 2, 3, 8, 8)
    augment(clips, torch.Generator().manual_seed(0))  # a first call may compute what it keeps
    calls = []
    real_inv = torch.linalg.inv
    monkeypatch.setattr(torch.linalg, "inv", lambda *a, **k: calls.append(1) or real_inv(*a, **k))
    for seed in range(5):
        augment(clips, torch.Generator().manual_seed(seed))
    assert calls == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_augmentation_on_a_gpu_never_synchronises():
    clips = torch.rand(6, 4, 3, 20, 30, device="cuda")
    _augment_and_mix(clips, 0)  # warm-up: the caching allocator's first blocks, cuDNN's handles
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for seed in range(4):
            _augment_and_mix(clips, seed)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()


# ---- the training step and the val loss

READS = {
    torch.Tensor.item,
    torch.Tensor.__float__,
    torch.Tensor.__int__,
    torch.Tensor.__bool__,
    torch.Tensor.__format__,
    torch.Tensor.tolist,
    torch.Tensor.numpy,
    torch.Tensor.cpu,
}


class OnDevice(torch.Tensor):
    """A tensor that stands for one on the GPU: every tensor computed from it is one too, and each read of its
    values on the host is counted."""

    reads: list[str] = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in READS:
            cls.reads.append(func.__name__)
        return super().__torch_function__(func, types, args, kwargs or {})


class TinyNet(nn.Module):
    def __init__(self, num_outputs: int):
        super().__init__()
        self.fc = nn.Linear(3, num_outputs)

    def forward(self, clips: torch.Tensor) -> dict:
        return {"logits": self.fc(clips.mean(dim=(-2, -1)))}


class Bar:
    """Stands for tqdm; keeps the postfixes shown."""

    shown: list[dict] = []
    disable = False

    def __init__(self, *args, **kwargs):
        pass

    def set_postfix(self, **kwargs):
        Bar.shown.append(kwargs)

    def update(self, n: int = 1):
        pass

    def close(self):
        pass


def _batch(generator: torch.Generator, b: int = 2, t: int = 4) -> dict:
    return {
        "frames": torch.randint(0, 256, (b, t, 20, 24, 3), dtype=torch.uint8, generator=generator),
        "labels": torch.randint(0, 3, (b, t), generator=generator),
        "team": torch.zeros(b, t),
        "team_mask": torch.zeros(b, t),
    }


def _trainer(tmp_path, micro_batches: int, acc: int) -> Trainer:
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = TinyNet(3)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    loaders = Loaders(
        train=[_batch(generator) for _ in range(micro_batches)],
        val=[_batch(generator) for _ in range(3)],
        train_sampler=SimpleNamespace(set_epoch=lambda epoch: None),
        micro_batch=2,
        frame_size=(16, 16),
    )
    config = {"classes": ["PASS", "DRIVE"], "frame_height": 16, "frame_width": 16, "displacement": 0}
    return Trainer(
        args=TrainOptions(clip_len=4, acc_grad_iter=acc, seed=0, augment=True, mixup=True, amp=False),
        config={**config, "team": False},
        dist=Dist(),
        model=net,
        net=net,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        loaders=loaders,
        inputs=FrameInputs(tmp_path),
        augment=ClipAugment(crop_hw=(16, 16)),
        class_weights=torch.tensor([1.0, 5.0, 5.0]),
    )


@pytest.fixture
def losses(monkeypatch) -> list[torch.Tensor]:
    """The training loss is an ``OnDevice`` tensor; returns the list of the losses computed."""
    computed: list[torch.Tensor] = []
    real = loop.spot_loss

    def spot_loss(*args, **kwargs):
        loss = real(*args, **kwargs).as_subclass(OnDevice)
        computed.append(loss)
        return loss

    monkeypatch.setattr(loop, "spot_loss", spot_loss)
    monkeypatch.setattr(loop, "tqdm", Bar)
    monkeypatch.setattr(OnDevice, "reads", [])
    monkeypatch.setattr(Bar, "shown", [])
    return computed


def _mean(losses: list[torch.Tensor]) -> float:
    total = 0.0  # what the epoch's loss was before it stayed on the device: a Python float's sum
    for loss in losses:
        total += loss.as_subclass(torch.Tensor).item()
    return total / len(losses)


def test_an_epoch_reads_its_loss_back_once(tmp_path, monkeypatch, losses):
    # The progress bar is not due (its interval not reached): the loss is read once, at the end of the epoch,
    # not once per micro-batch (8 here, 4 optimizer steps of 2).
    monkeypatch.setattr(loop, "PROGRESS_EVERY_S", math.inf, raising=False)
    trainer = _trainer(tmp_path, micro_batches=8, acc=2)
    stats = trainer.train_epoch(0)
    assert len(losses) == 8
    assert len(OnDevice.reads) == 1, OnDevice.reads
    # The same mean as a sum of the losses read one by one, to the bit (the sum is kept in float64).
    assert stats["train"] == _mean(losses)
    assert trainer.val_loss() == _mean(losses[8:]) and len(losses) == 11
    assert len(OnDevice.reads) == 2, OnDevice.reads


def test_the_progress_bar_still_shows_loss_lr_and_fps_at_most_once_per_step(tmp_path, monkeypatch, losses):
    monkeypatch.setattr(loop, "PROGRESS_EVERY_S", 0.0, raising=False)  # every step is due
    trainer = _trainer(tmp_path, micro_batches=8, acc=2)
    stats = trainer.train_epoch(0)
    assert len(Bar.shown) == 4 and all(set(shown) == {"loss", "lr", "fps"} for shown in Bar.shown)
    assert float(Bar.shown[-1]["loss"]) == pytest.approx(stats["train"], abs=1e-4)
    # A read per step shown and the epoch's: fewer than one per micro-batch.
    assert len(OnDevice.reads) == 4 + 1, OnDevice.reads
