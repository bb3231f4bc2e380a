"""The E2E-Spot network: every registered backbone x head, the shifts, checkpoints, pretrained-weight errors."""

from __future__ import annotations

import math
import random
import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model import common
from model.common import (
    BACKBONES,
    HEADS,
    IMAGENET_MEAN,
    PretrainedWeightsError,
    build_model,
    default_config,
    list_epochs,
    load_checkpoint,
    load_config,
    load_model,
    save_checkpoint,
    smoothing_loss,
)
from model.impl.asformer import window_attention
from model.impl.backbones import BASE_BACKBONES, build_backbone
from model.impl.gsm import GatedShift
from model.impl.tdeed import TDEEDHead, wide_kernel
from model.impl.tsm import temporal_shift
from model.shift import ShiftThenConv
from util.io import DataError

CLASSES = ["PASS", "DRIVE", "SHOT"]


def tiny_config(**overrides):
    base = {"classes": CLASSES, "clip_len": 8, "pretrained": False, "frame_height": 64, "frame_width": 112}
    return default_config(**{**base, **overrides})


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Hundreds of small ops per forward pass: on a busy CI machine, threads waiting for each other at every
    # op cost far more than they gain (the file runs ~10x slower with 2 threads next to other jobs).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _loss(out):
    loss = F.cross_entropy(out["logits"].flatten(0, 1), torch.zeros(16, dtype=torch.long)) + out["team"].sum()
    for stage in out.get("stage_logits", []):
        assert stage.shape == out["logits"].shape
        loss = loss + smoothing_loss(stage)
    assert torch.isfinite(loss)
    return loss


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_every_backbone_runs_forward_and_backward(backbone):
    model = build_model(tiny_config(feature_arch=backbone, temporal_arch="gru", team=True)).train()
    out = model(torch.randint(0, 256, (2, 8, 3, 64, 112), dtype=torch.uint8))
    assert out["logits"].shape == (2, 8, len(CLASSES) + 1)
    assert out["team"].shape == (2, 8)
    _loss(out).backward()
    for name, p in model.named_parameters():
        # Zero-initialised GSM gates get a gradient too; only their bias may see exact cancellation.
        assert p.grad is not None, name
    first_conv = next(p for p in model.backbone.parameters() if p.dim() == 4)
    assert first_conv.grad.abs().sum() > 0


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("backbone", list(BASE_BACKBONES))
def test_every_head_runs_forward_and_backward_on_every_feature_width(backbone, head):
    # A head sees only the backbone's feature width: one backbone per width (a shift variant has its base's
    # width, and every variant's own forward and backward pass is tested above).
    model = build_model(tiny_config(feature_arch=backbone, temporal_arch=head, team=True)).train()
    # The backbone's own backward pass is covered above; freezing it here keeps the combinations fast.
    model.backbone.requires_grad_(False)
    out = model(torch.randint(0, 256, (2, 8, 3, 64, 112), dtype=torch.uint8))
    assert out["logits"].shape == (2, 8, len(CLASSES) + 1)
    assert out["team"].shape == (2, 8)
    _loss(out).backward()
    for name, p in [*model.head.named_parameters(), *model.team_head.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_multi_stage_heads_return_every_stage():
    for head, stages in (("mstcn", 3), ("asformer", 4)):
        out = build_model(tiny_config(feature_arch="rny002", temporal_arch=head)).eval()(
            torch.rand(1, 8, 3, 64, 112)
        )
        assert len(out["stage_logits"]) == stages
        assert torch.equal(out["stage_logits"][-1], out["logits"])
    assert "stage_logits" not in build_model(tiny_config(feature_arch="rny002")).eval()(
        torch.rand(1, 8, 3, 64, 112)
    )


def test_gru_hidden_size_is_feature_size_capped_at_768():
    assert build_model(tiny_config(feature_arch="rny002")).head.gru.hidden_size == 368
    deep = build_model(tiny_config(feature_arch="rn50", temporal_arch="deeper_gru")).head.gru
    assert (deep.hidden_size, deep.num_layers, deep.bidirectional) == (768, 3, True)


# Seed README, "Feature Backbone Options": ImageNet classifiers, in millions of parameters.
SEED_TABLE = {"rn18": 11.7, "rn18_tsm": 11.7, "rn18_gsm": 11.8, "rn50": 25.6, "rny002": 3.2, "rny008": 6.3}


@pytest.mark.parametrize("name", list(SEED_TABLE))
def test_parameter_counts_match_seed_readme(name):
    net, _ = build_backbone(name, clip_len=8, pretrained=False, imagenet_classifier=True)
    count = sum(p.numel() for p in net.parameters())
    # Within 1%, or within the table's own rounding to 0.1M (rny002: 3.16M is printed as 3.2M).
    assert abs(count / 1e6 - SEED_TABLE[name]) <= max(0.01 * SEED_TABLE[name], 0.05), count


def test_tsm_moves_an_eighth_of_channels_each_way_with_zero_fill():
    clips, clip_len, channels = 2, 4, 16
    # value = 1000 * clip + 100 * (frame + 1) + channel: every entry says where it came from.
    x = torch.zeros(clips, clip_len, channels, 1, 1)
    for n in range(clips):
        for t in range(clip_len):
            for c in range(channels):
                x[n, t, c] = 1000 * n + 100 * (t + 1) + c
    y = temporal_shift(x.flatten(0, 1), clip_len, fold_div=8).view_as(x)
    for n in range(clips):
        for t in range(clip_len):
            back = x[n, t + 1, 0:2] if t + 1 < clip_len else torch.zeros(2, 1, 1)
            fwd = x[n, t - 1, 2:4] if t > 0 else torch.zeros(2, 1, 1)
            assert torch.equal(y[n, t, 0:2], back)
            assert torch.equal(y[n, t, 2:4], fwd)
            assert torch.equal(y[n, t, 4:], x[n, t, 4:])


def test_shift_is_inserted_in_every_residual_block():
    for name, blocks in (("rn18_tsm", 8), ("rn50_gsm", 16), ("rny002_tsm", 13), ("rny008_gsm", 14)):
        net, _ = build_backbone(name, clip_len=4, pretrained=False)
        assert sum(isinstance(m, ShiftThenConv) for m in net.modules()) == blocks, name


def test_gsm_gate_is_learnable_and_shape_preserving():
    torch.manual_seed(1)
    gsm = GatedShift(channels=16, clip_len=4, channel_div=2)  # gates 8 channels: 4 back, 4 forward
    x = torch.randn(2 * 4, 16, 3, 5)
    y = gsm(x)
    assert y.shape == x.shape
    assert torch.equal(y, x)  # a new GSM is the identity (zero gate), so ImageNet features survive
    (y * torch.randn_like(y)).sum().backward()
    assert gsm.gate.weight.grad.abs().sum() > 0
    torch.optim.SGD(gsm.parameters(), lr=1.0).step()
    assert not torch.allclose(gsm(x), x)


def test_gsm_fully_open_gate_shifts_like_tsm():
    gsm = GatedShift(channels=16, clip_len=4, channel_div=2).eval()
    with torch.no_grad():
        gsm.gate.bias.fill_(100.0)  # tanh(100) == 1: everything gated moves
    x = torch.randn(2 * 4, 16, 3, 5)
    clips = x.view(2, 4, 16, 3, 5)
    y = gsm(x).view(2, 4, 16, 3, 5)
    zero = torch.zeros_like(clips[:, :1, :4])
    assert torch.allclose(y[:, :, 0:4], torch.cat([clips[:, 1:, 0:4], zero], 1))
    assert torch.allclose(y[:, :, 4:8], torch.cat([zero, clips[:, :-1, 4:8]], 1))
    assert torch.equal(y[:, :, 8:], clips[:, :, 8:])


def test_gsm_gate_statistics_are_batchnorm3d_over_clips():
    """The gate's batch norm runs on the 4D layout, but its statistics are BatchNorm3d's over (clip, time, y, x)
    (training mode), and a BatchNorm3d state dict loads into it."""
    torch.manual_seed(2)
    gsm = GatedShift(channels=12, clip_len=3, channel_div=2)
    with torch.no_grad():
        gsm.gate.weight.normal_()
    reference = torch.nn.BatchNorm3d(gsm.gated)
    reference.load_state_dict(gsm.norm.state_dict())
    x = torch.randn(2 * 3, 12, 4, 5)
    moved = x[:, : gsm.gated].reshape(2, 3, gsm.gated, 4, 5).transpose(1, 2)  # (N, C, T, H, W)
    gate = torch.tanh(gsm.gate(torch.relu(reference(moved))))
    back = (
        gate[:, 0].unsqueeze(1) * moved[:, : gsm.gated // 2]
    )  # gated part of the first group, (N, C, T, H, W)
    expected = x.reshape(2, 3, 12, 4, 5).clone()
    expected[:, :, : gsm.gated // 2] -= back.transpose(1, 2)
    expected[:, :-1, : gsm.gated // 2] += back.transpose(1, 2)[:, 1:]
    got = gsm(x).reshape(2, 3, 12, 4, 5)
    assert torch.allclose(got[:, :, : gsm.gated // 2], expected[:, :, : gsm.gated // 2], atol=1e-6)
    assert torch.allclose(gsm.norm.running_mean, reference.running_mean, atol=1e-6)


def test_short_and_long_clips_are_padded_transparently():
    model = build_model(tiny_config(feature_arch="rny002_tsm", temporal_arch="fc")).eval()
    frames = torch.rand(2, 5, 3, 64, 112)
    # Padding = mean-colour frames (zero after normalisation): the same as feeding them ourselves.
    mean_frames = torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1).expand(2, 3, 3, 64, 112)
    with torch.no_grad():
        short = model(frames)["logits"]
        full = model(torch.cat([frames, mean_frames], 1))["logits"]
        assert short.shape == (2, 5, len(CLASSES) + 1)
        assert torch.allclose(short, full[:, :5], atol=1e-5)
        assert model(torch.rand(1, 11, 3, 64, 112))["logits"].shape == (1, 11, len(CLASSES) + 1)


def test_uint8_and_float_frames_agree():
    model = build_model(tiny_config(feature_arch="rny002", temporal_arch="gru")).eval()
    frames = torch.randint(0, 256, (1, 4, 3, 64, 112), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.allclose(model(frames)["logits"], model(frames.float() / 255)["logits"], atol=1e-5)


def test_window_attention_equals_dense_attention_with_a_band_mask():
    torch.manual_seed(2)
    q, k, v = torch.randn(2, 4, 7), torch.randn(2, 4, 7), torch.randn(2, 3, 7)
    block = 2
    got = window_attention(q, k, v, block)
    # Query i (in block b = i // 2) sees keys [2b - 1, 2b + 3).
    scores = torch.einsum("bdq,bdk->bqk", q, k) / math.sqrt(4)
    i, j = torch.arange(7).view(-1, 1), torch.arange(7).view(1, -1)
    start = (i // block) * block - block // 2
    allowed = (j >= start) & (j < start + 2 * block)
    want = torch.einsum("bqk,bdk->bdq", scores.masked_fill(~allowed, float("-inf")).softmax(-1), v)
    assert torch.allclose(got, want, atol=1e-6)


def test_tdeed_defaults_are_t_deeds_soccernet_ball_configuration():
    # T-DEED's SoccerNet-Ball configs: 2 levels, SGP kernel 9, r = 4; width = RegNet-Y's feature width.
    head = TDEEDHead(368, 13)
    assert (len(head.encoder), len(head.mixers), len(head.decoder)) == (2, 2, 2)
    branches = head.encoder[0].branches
    assert (branches.narrow.kernel_size, branches.wide.kernel_size, branches.gate.kernel_size) == (
        (9,),
        (41,),
        (9,),
    )
    assert head.feature_dim == 368 and isinstance(head.proj, torch.nn.Identity)
    assert (wide_kernel(9, 4), wide_kernel(11, 4), wide_kernel(3, 1.5)) == (41, 49, 7)  # always odd
    wide = TDEEDHead(800, 5, levels=1)  # wider than a RegNet-Y 800MF: projected to 768 first
    assert wide.feature_dim == 768 and wide.proj.weight.shape == (768, 800)


# The temporal module + classifier of T-DEED's own code (model/modules.py of arturxe2/T-DEED, SoccerNet-Ball
# configs, 12 classes + background), counted by building it: 9,452,816 + 4,797 and 40,617,216 + 9,997.
TDEED_HEAD_PARAMETERS = {368: 9_457_613, 768: 40_627_213}


@pytest.mark.parametrize("width", list(TDEED_HEAD_PARAMETERS))
def test_tdeed_head_has_as_many_parameters_as_t_deeds_own(width):
    assert sum(p.numel() for p in TDEEDHead(width, 13).parameters()) == TDEED_HEAD_PARAMETERS[width]


@pytest.mark.parametrize("frames", [1, 2, 3, 5, 8, 13])
def test_tdeed_head_takes_any_clip_length_and_halves_it_per_level(frames):
    head = TDEEDHead(48, 4, levels=3).train()  # 2**3 = 8 frames: most of these are shorter or not a multiple
    lengths = []
    for layer in [*head.encoder, head.bottleneck]:
        layer.register_forward_hook(lambda module, args, out: lengths.append(out.shape[1]))
    out = head(torch.randn(2, frames, 48))
    assert out["logits"].shape == (2, frames, 4) and out["features"].shape == (2, frames, 48)
    assert lengths == [math.ceil(frames / 2**level) for level in range(4)]  # exact lengths, no padding
    out["logits"].square().sum().backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_tdeed_frames_see_their_whole_clip_and_nothing_else_in_the_batch():
    head = TDEEDHead(48, 4).eval()
    clips = torch.randn(3, 11, 48)
    with torch.no_grad():
        together = head(clips)["logits"]
        # Group norms and clip means are per clip: a clip's output does not depend on what it is batched with.
        assert torch.allclose(together[1:2], head(clips[1:2])["logits"], atol=1e-5)
        assert torch.allclose(
            together[:1], head(torch.cat([clips[:1], torch.zeros(4, 11, 48)]))["logits"][:1], atol=1e-5
        )
        changed = clips.clone()
        changed[1, 0] += 1.0
        after = head(changed)["logits"]
    assert torch.allclose(after[[0, 2]], together[[0, 2]], atol=1e-6)
    assert not torch.allclose(after[1, -1], together[1, -1])  # the last frame sees the first one


def test_tdeed_head_trains_and_predicts_under_cpu_bf16_autocast():
    head = TDEEDHead(48, 4)
    clips = torch.randn(2, 7, 48)
    with torch.no_grad():
        full = head.eval()(clips)["logits"].softmax(-1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = head(clips)
    assert half["logits"].dtype == torch.bfloat16 and half["features"].shape == (2, 7, 48)
    assert torch.allclose(half["logits"].float().softmax(-1), full, atol=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head.train()(clips)
    out["logits"].float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())


def test_smoothing_loss_is_zero_for_constant_and_truncated_for_jumps():
    constant = torch.randn(1, 1, 5).expand(2, 6, 5)
    assert smoothing_loss(constant).item() == 0
    jumpy = torch.zeros(1, 2, 2)
    jumpy[0, 1, 0] = 1000.0  # log-probabilities go from (-log 2, -log 2) to (0, -1000)
    # Class 0 moves by log 2; class 1 by ~1000, truncated at tau**2 = 16.
    assert smoothing_loss(jumpy).item() == pytest.approx((math.log(2) ** 2 + 16) / 2)


def test_channels_last_and_compile_flag():
    model = build_model(tiny_config(feature_arch="rn18_gsm"))
    conv = model.backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert not default_config()["compile"]
    compiled = build_model(tiny_config(feature_arch="rny002", compile=True))
    assert compiled._compiled_call_impl is not None
    assert compiled.state_dict().keys() == build_model(tiny_config(feature_arch="rny002")).state_dict().keys()


def _train_step(model, optimizer, scaler, scheduler):
    out = model(torch.rand(2, 8, 3, 64, 112))
    loss = out["logits"].square().mean() + out["team"].square().mean()
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()


def _training_state(config):
    model = build_model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    return model, optimizer, scaler, scheduler


def test_checkpoint_roundtrip_rebuilds_from_the_directory(tmp_path):
    config = tiny_config(feature_arch="rny002_gsm", temporal_arch="gru", team=True, my_training_key=7)
    model, optimizer, scaler, scheduler = _training_state(config)
    _train_step(model, optimizer, scaler, scheduler)
    save_checkpoint(tmp_path, 1, model, optimizer, scaler, scheduler, extra={"best": 0.5})
    _train_step(model, optimizer, scaler, scheduler)
    save_checkpoint(tmp_path, 2, model, optimizer, scaler, scheduler)
    save_checkpoint(tmp_path, 3, model, optimizer, scaler, scheduler)
    assert list_epochs(tmp_path) == [1, 2, 3]
    assert (tmp_path / "optim_003.pt").is_file()
    assert load_config(tmp_path)["my_training_key"] == 7

    loaded, loaded_config, epoch = load_model(tmp_path)
    assert epoch == 3 and loaded_config["team"] and not loaded.training
    frames = torch.rand(1, 8, 3, 64, 112)
    model.eval()
    with torch.no_grad():
        a, b = model(frames), loaded(frames)
    assert torch.equal(a["logits"], b["logits"]) and torch.equal(a["team"], b["team"])

    model2, opt2, scaler2, sched2 = _training_state(config)
    info = load_checkpoint(
        tmp_path, model2, optimizer=opt2, scaler=scaler2, scheduler=sched2, restore_rng=True
    )
    assert info["epoch"] == 3
    assert sched2.state_dict() == scheduler.state_dict() and scaler2.get_scale() == scaler.get_scale()
    assert opt2.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"] == 2
    assert load_checkpoint(tmp_path, model2, epoch=1)["extra"] == {"best": 0.5}


def test_rng_states_are_restored(tmp_path):
    model = build_model(tiny_config(feature_arch="rny002", temporal_arch="fc"))
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    save_checkpoint(tmp_path, 0, model)
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    load_checkpoint(tmp_path, model, restore_rng=True)
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])


def test_mismatched_config_is_refused_naming_the_difference(tmp_path):
    save_checkpoint(tmp_path, 0, build_model(tiny_config(feature_arch="rny002", temporal_arch="gru")))
    other = build_model(tiny_config(feature_arch="rny002", temporal_arch="mstcn"))
    with pytest.raises(DataError, match=r"temporal_arch: 'mstcn' != 'gru'"):
        load_checkpoint(tmp_path, other)
    with pytest.raises(DataError, match="temporal_arch"):
        save_checkpoint(tmp_path, 1, other)


def test_missing_model_directory_and_epoch_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="no config.json"):
        load_model(tmp_path / "nowhere")
    common.save_config(tmp_path, tiny_config(feature_arch="rny002"))
    with pytest.raises(DataError, match="no checkpoint"):
        load_model(tmp_path)
    save_checkpoint(tmp_path, 4, build_model(tiny_config(feature_arch="rny002")))
    with pytest.raises(DataError, match="available: 4"):
        load_model(tmp_path, epoch=2)
    (tmp_path / "checkpoint_005.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="checkpoint_005.pt"):
        load_model(tmp_path)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(DataError, match="valid: rn18, rn18_tsm, rn18_gsm, rn18_gsf, rn50"):
        build_model(tiny_config(feature_arch="resnet18"))
    with pytest.raises(DataError, match="valid: gru, deeper_gru, mstcn, asformer, fc"):
        build_model(tiny_config(feature_arch="rny002", temporal_arch="lstm"))


def test_offline_torchvision_weights_give_one_clear_message(monkeypatch):
    def offline(url, **kwargs):
        assert kwargs["weights_only"]
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(PretrainedWeightsError, match="TORCH_HOME.*--no_pretrained") as err:
        build_model(tiny_config(feature_arch="rn18_tsm", pretrained=True))
    assert isinstance(err.value, DataError)  # scripts turn it into one line on stderr


def test_offline_timm_weights_give_one_clear_message(monkeypatch):
    import timm
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("cannot find the requested files in the local cache")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(PretrainedWeightsError, match="HF_HOME.*--no_pretrained"):
        build_model(tiny_config(feature_arch="rny008_gsm", pretrained=True))


def test_pretrained_torchvision_weights_are_loaded(monkeypatch):
    reference = build_backbone("rn18", clip_len=8, pretrained=False, imagenet_classifier=True)[0].state_dict()
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda url, **kwargs: reference)
    model = build_model(tiny_config(feature_arch="rn18_gsm", pretrained=True))
    assert torch.equal(model.backbone.layer1[0].conv1.conv.weight, reference["layer1.0.conv1.weight"])


def test_cpu_autocast_is_bf16_only_with_native_bf16_and_can_be_switched_off(monkeypatch):
    from model import predict

    cpu = torch.device("cpu")
    monkeypatch.delenv(predict.ENV_CPU_AMP, raising=False)
    monkeypatch.setattr(predict, "cpu_has_native_bf16", lambda: True)
    with predict.autocast(cpu):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    monkeypatch.setenv(predict.ENV_CPU_AMP, "off")
    with predict.autocast(cpu):
        assert not torch.is_autocast_enabled("cpu")
    monkeypatch.setenv(predict.ENV_CPU_AMP, "auto")
    monkeypatch.setattr(predict, "cpu_has_native_bf16", lambda: False)  # emulated bf16 would be slower
    with predict.autocast(cpu):
        assert not torch.is_autocast_enabled("cpu")


def test_bf16_cpu_scores_keep_fp32s_decisions(monkeypatch):
    """Under bf16 autocast on a CPU the model makes fp32's decisions: the same class at every frame, the same peak
    frame of every class, logits within 2 % of their range. An untrained head's scores are all about 1/13, where even
    the scores of the wrong class or frame stay within any bound, so the head's classifier is set here to give sharp
    scores: class c peaks at frame c % 8, by a margin that grows with c (no two classes tie)."""
    from model import predict

    torch.manual_seed(0)
    config = default_config(feature_arch="rny002", temporal_arch="gru", clip_len=8, pretrained=False)
    model = build_model(config).eval()
    frames = torch.randint(0, 256, (1, 8, 3, 64, 112), dtype=torch.uint8)
    fc = model.head.fc
    with torch.inference_mode():
        # (T, D): the GRU's features, what the classifier reads
        features = model.head.gru(model.frame_features(model.normalise(frames)))[0][0]
    centred = features - features.mean(0)
    peak = torch.arange(fc.out_features) % len(features)
    gain = 10 * (1 + torch.arange(fc.out_features) / fc.out_features)
    target = gain * (F.one_hot(peak, len(features)).T - 1 / len(features))  # (T, C): the fp32 logits
    with torch.no_grad():
        fc.weight.copy_((torch.linalg.pinv(centred) @ target).T)
        fc.bias.copy_(-fc.weight @ features.mean(0))
    monkeypatch.setattr(predict, "cpu_has_native_bf16", lambda: True)
    logits, scores = {}, {}
    for mode in ("off", "on"):
        monkeypatch.setenv(predict.ENV_CPU_AMP, mode)
        with torch.inference_mode(), predict.autocast(torch.device("cpu")):
            assert torch.is_autocast_enabled("cpu") == (mode == "on")
            output = model(frames)
        logits[mode] = output["logits"].float()[0]
        scores[mode] = torch.from_numpy(predict._numpy_outputs(output, config)["scores"][0])
    assert torch.allclose(logits["off"], target, atol=1e-3) and scores["off"].max(-1).values.min() > 0.99
    assert torch.equal(scores["off"].argmax(0), peak) and torch.equal(scores["on"].argmax(0), peak)
    assert torch.equal(scores["on"].argmax(-1), scores["off"].argmax(-1))
    error, span = (logits["on"] - logits["off"]).abs().max(), logits["off"].max() - logits["off"].min()
    assert error < 0.02 * span, (error, span)
    assert torch.allclose(scores["on"], scores["off"], atol=0.01)
