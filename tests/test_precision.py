"""Precision per device (issue 32): which mixed precision a GPU gets, that training's precision reaches its own
predictions, resume across precision, and exactness on GPUs. No GPU runs here: the CUDA conditions (compute
capability, what torch says of bf16) are simulated."""

from __future__ import annotations

import contextlib
import logging

import pytest
import torch

from model import predict
from model.train.options import TrainOptions


@pytest.fixture
def gpu(monkeypatch):
    """A simulated GPU of a given compute capability; ``torch.cuda.is_bf16_supported()`` says True, as it does on T4
    and V100 too (it counts emulation)."""

    def with_capability(major: int, minor: int = 0) -> None:
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (major, minor))

    return with_capability


@pytest.fixture
def entered_autocasts(monkeypatch):
    """The (device type, dtype) of every ``torch.autocast`` the predict module enters (none is entered for real)."""
    entered = []

    def record(device_type, dtype=None, **kwargs):
        entered.append((device_type, dtype))
        return contextlib.nullcontext()

    monkeypatch.setattr(predict.torch, "autocast", record)
    return entered


# ---- 1. precision per GPU


@pytest.mark.parametrize(("capability", "dtype"), [((7, 0), torch.float16), ((7, 5), torch.float16),
                                                   ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])  # fmt: skip
def test_auto_precision_is_bf16_only_where_the_gpu_computes_it_natively(
    gpu, entered_autocasts, capability, dtype
):
    import extract_features

    gpu(*capability)
    cuda = torch.device("cuda")
    # The predict path's default (eval, inference, the app), and what extract_features.py records.
    with predict.autocast(cuda):
        pass
    assert entered_autocasts == [("cuda", dtype)]
    name = "bf16" if dtype == torch.bfloat16 else "fp16"
    assert extract_features.precision_name(cuda) == f"{name} autocast"
    # Training: fp16 comes with a GradScaler, and the log says why.
    from model.train.loop import train_precision

    precision = train_precision(TrainOptions(amp_dtype="auto"), cuda)
    assert precision.dtype == dtype and precision.scaled == (dtype == torch.float16)
    sm = f"sm_{capability[0]}{capability[1]}"
    if dtype == torch.float16:
        assert precision.text() == f"fp16 autocast + GradScaler: this GPU ({sm}) has no native bf16"
    else:
        assert precision.text() == f"bf16 autocast: this GPU ({sm}) computes bf16 natively"


def test_explicit_bf16_on_a_gpu_without_native_bf16_is_kept_with_a_warning(gpu):
    from model.train.loop import train_precision

    gpu(7, 0)
    precision = train_precision(TrainOptions(amp_dtype="bf16"), torch.device("cuda"))
    assert precision.dtype == torch.bfloat16 and not precision.scaled
    assert "sm_70" in precision.warning and "no native bf16" in precision.warning
    assert precision.text() == "bf16 autocast: --amp_dtype bf16, emulated on this GPU (sm_70)"
    gpu(8, 0)
    native = train_precision(TrainOptions(amp_dtype="bf16"), torch.device("cuda"))
    assert native.warning is None and native.text() == "bf16 autocast: --amp_dtype bf16"
    fp16 = train_precision(TrainOptions(amp_dtype="fp16"), torch.device("cuda"))
    assert fp16.scaled and fp16.text() == "fp16 autocast + GradScaler: --amp_dtype fp16"
    assert train_precision(TrainOptions(amp=False), torch.device("cuda")).text() == "fp32: --no-amp"


# ---- 2. validation and prediction in the training's precision


class AutocastProbe(torch.nn.Module):
    """A model that records, per forward pass, whether CPU autocast was on."""

    def __init__(self):
        super().__init__()
        self.autocast_on: list[bool] = []

    def forward(self, clips: torch.Tensor) -> dict:
        self.autocast_on.append(torch.is_autocast_enabled("cpu"))
        return {"logits": torch.zeros(*clips.shape[:2], 3)}


@pytest.mark.parametrize("amp", [False, True])
def test_val_predictions_run_in_the_trainings_precision(tmp_path, monkeypatch, amp):
    from types import SimpleNamespace

    from model.train.dist import Dist
    from model.train.inputs import FrameInputs
    from model.train.loop import train_precision
    from model.train.selection import predict_sharded
    from tests.conftest import CLASSES, write_video_frames

    # A CPU with native bf16, where predict's default (eval, inference, the app) is bf16 autocast.
    monkeypatch.delenv(predict.ENV_CPU_AMP, raising=False)
    monkeypatch.setattr(predict, "cpu_has_native_bf16", lambda: True)
    write_video_frames(tmp_path / "frames" / "v", 12)
    config = {"clip_len": 8, "classes": CLASSES, "fps": 25.0, "team": False}
    probe = AutocastProbe()
    trainer = SimpleNamespace(
        dist=Dist(),
        inputs=FrameInputs(tmp_path / "frames"),
        eval_net=probe,
        config=config,
        precision=train_precision(TrainOptions(amp=amp), torch.device("cpu")),
    )
    results = predict_sharded(trainer, [{"video": "v", "num_frames": 12}])
    assert results["v"][0].shape == (12, 3)
    # --no-amp trains in fp32, so its epoch is chosen on fp32 scores; --amp on this CPU trains in bf16.
    assert probe.autocast_on and set(probe.autocast_on) == {amp}
    # Without a precision, the predict path keeps its default.
    probe.autocast_on.clear()
    predict.predict_videos(probe, config, tmp_path / "frames", [{"video": "v"}])
    assert set(probe.autocast_on) == {True}


def test_autocast_in_fp32_is_none_and_an_explicit_fp16_is_kept(entered_autocasts, gpu):
    gpu(8, 0)
    for precision, expected in ((torch.float16, [("cuda", torch.float16)]), (torch.float32, [])):
        entered_autocasts.clear()
        with predict.autocast(torch.device("cuda"), precision):
            pass
        assert entered_autocasts == expected


# ---- 3. resume across precision


def test_a_run_saved_without_a_grad_scaler_resumes_in_fp16_with_a_fresh_one(tmp_path, caplog):
    from model.common import build_model, default_config, load_checkpoint, save_checkpoint

    config = default_config(feature_arch="rny002", temporal_arch="gru", clip_len=8, pretrained=False)
    net = build_model(config)
    optimizer = torch.optim.AdamW(net.parameters())
    # Saved in bf16 (or fp32): the scaler is disabled and its state is empty.
    save_checkpoint(tmp_path, 0, net, optimizer, torch.amp.GradScaler("cpu", enabled=False))
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    with caplog.at_level(logging.INFO, logger="model.common"):
        info = load_checkpoint(
            tmp_path, build_model(config), None, torch.optim.AdamW(net.parameters()), scaler
        )
    assert info["epoch"] == 0 and scaler.get_scale() == 65536.0  # a fresh scaler's scale
    assert "saved without a GradScaler (fp32 or bf16); fp16 continues with a fresh one" in caplog.text
    # An fp16 run's scaler still resumes as saved.
    saved = torch.amp.GradScaler("cpu", enabled=True, init_scale=128.0)
    save_checkpoint(tmp_path, 1, net, optimizer, saved)
    again = torch.amp.GradScaler("cpu", enabled=True)
    load_checkpoint(tmp_path, build_model(config), 1, torch.optim.AdamW(net.parameters()), again)
    assert again.get_scale() == 128.0


def test_config_records_the_resolved_precision_and_a_resume_on_another_gpu_is_not_refused(tmp_path, caplog):
    import train_e2e
    from model.train.dist import Dist
    from model.train.options import from_namespace
    from model.train.run import prepare
    from model.train.run_config import check_resume_config
    from tests.test_train import tiny_library, train_argv

    frame_dir, data_dir = tiny_library(tmp_path)
    args = from_namespace(train_e2e.get_args(train_argv(tmp_path, frame_dir, data_dir, "--no-amp")))
    _, _, saved, _ = prepare(args, Dist(), tmp_path / "model")  # the config.json that rank 0 writes
    assert saved["train"]["resolved"]["precision"] == "fp32"
    # --amp_dtype auto, saved in bf16 on an A100 and resumed on a V100 (fp16): the same flags, so not refused.
    bf16 = {
        **saved,
        "train": {**saved["train"], "resolved": {**saved["train"]["resolved"], "precision": "bf16"}},
    }
    fp16 = {
        **saved,
        "train": {**saved["train"], "resolved": {**saved["train"]["resolved"], "precision": "fp16"}},
    }
    with caplog.at_level(logging.INFO, logger="model.train.run_config"):
        check_resume_config(bf16, fp16, tmp_path / "model")
    assert "--resume: trained in bf16 so far, in fp16 from here on" in caplog.text


# ---- 4. exactness on GPUs


@pytest.fixture
def restored_determinism(monkeypatch):
    """Leaves torch's global switches as they were (init_distributed sets them for the whole process)."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", torch.backends.cudnn.deterministic)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)  # a simulated GPU
    enabled, warn_only = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def test_deterministic_makes_a_gpu_run_exact_and_is_a_runtime_choice(restored_determinism):
    import os

    import train_e2e
    from model.train.dist import init_distributed
    from model.train.options import carried_by_config, compared_on_resume

    # Without --deterministic, as before: cuDNN's autotuner on, nothing else changed.
    init_distributed("cuda")
    assert torch.backends.cudnn.benchmark is True and not torch.are_deterministic_algorithms_enabled()
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    args = train_e2e.get_args(
        ["data", "frames", "-m", "rny002_gsm", "-t", "gru", "-s", "out", "--deterministic"]
    )
    assert args.deterministic is True
    init_distributed("cuda", deterministic=args.deterministic)
    assert torch.backends.cudnn.benchmark is False and torch.backends.cudnn.deterministic is True
    assert torch.are_deterministic_algorithms_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    # It changes how, not what, is trained: neither compared on --resume nor taken over by --config.
    assert not compared_on_resume("deterministic") and not carried_by_config("deterministic")
