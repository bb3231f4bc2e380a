"""Starting from another model's weights (--init_from), the backbone's own learning rate and focal loss."""

from __future__ import annotations

from argparse import Namespace

import pytest
import torch
import torch.nn.functional as F

from model.common import HEADS, build_model, default_config
from model.train import focal_loss, parameter_groups
from model.transfer import class_dependent, init_from, parse_init_from
from tests.conftest import write_tiny_model
from util.io import DataError

V2_CLASSES = [
    "Goal",
    "Corner",
    "Foul",
    "Throw-in",
    "Offside",
]  # a source over other classes (SoccerNet-v2-like)


def _fresh(seed: int = 1, **overrides):
    torch.manual_seed(seed)
    config = default_config(**{"pretrained": False, "clip_len": 8, "team": True, **overrides})
    return build_model(config), config


@pytest.mark.parametrize("head", ["gru", "mstcn"])
def test_init_from_loads_what_fits_and_reinitialises_the_outputs_over_other_classes(tmp_path, head):
    source_dir = write_tiny_model(tmp_path / "v2", classes=V2_CLASSES, temporal_arch=head)
    source = torch.load(source_dir / "checkpoint_000.pt", weights_only=True)
    model, config = _fresh(temporal_arch=head)
    untouched = {k: v.clone() for k, v in model.state_dict().items()}
    done = init_from(model, config, str(source_dir))
    state = model.state_dict()
    outputs = class_dependent(config, model.feature_dim)
    assert "head.fc.weight" in outputs if head == "gru" else "head.stages.1.inp.weight" in outputs
    assert set(done.reinitialised) == outputs and done.epoch == 0
    for name in outputs:  # the fresh initialisation, not the source's
        assert torch.equal(state[name], untouched[name]), name
    assert done.loaded and not set(done.loaded) & outputs
    for name in done.loaded:  # the backbone, the temporal layers, the team head: the source's
        assert torch.equal(state[name], source[name]), name
    assert any(n.startswith("backbone.") for n in done.loaded) and "team_head.weight" in done.loaded
    assert done.loaded_parameters + sum(state[n].numel() for n in outputs) == done.total_parameters
    assert (
        "re-initialised: head." in done.describe() and "class outputs over other classes" in done.describe()
    )


@pytest.mark.parametrize("head", list(HEADS))
def test_the_class_outputs_of_every_head_are_found(head):
    config = default_config(pretrained=False, clip_len=8, temporal_arch=head, classes=V2_CLASSES)
    outputs = class_dependent(config, 368)
    # Built with 6 and 7 outputs there; with 6 and 14 here: the same tensors, and only those, change shape.
    small, large = HEADS[head](368, 6).state_dict(), HEADS[head](368, 14).state_dict()
    assert outputs and outputs == {f"head.{k}" for k, v in small.items() if large[k].shape != v.shape}
    if head == "tdeed":
        assert outputs == {"head.fc.weight", "head.fc.bias"}


def test_init_from_loads_a_tdeed_model_over_other_classes_but_its_classifier(tmp_path):
    source_dir = write_tiny_model(tmp_path / "v2", classes=V2_CLASSES, temporal_arch="tdeed")
    source = torch.load(source_dir / "checkpoint_000.pt", weights_only=True)
    model, config = _fresh(temporal_arch="tdeed")
    fresh_fc = model.head.fc.weight.clone()
    done = init_from(model, config, str(source_dir))
    assert set(done.reinitialised) == {"head.fc.weight", "head.fc.bias"} and not done.new and not done.unused
    assert torch.equal(model.head.fc.weight, fresh_fc)
    state = model.state_dict()
    assert all(torch.equal(state[name], source[name]) for name in done.loaded)
    assert any(name.startswith("head.mixers.") for name in done.loaded)


def test_init_from_the_same_classes_reproduces_the_source_model(tmp_path):
    source_dir = write_tiny_model(tmp_path / "same", sharpen=4.0)
    source, _ = _fresh(seed=0, frame_height=64, frame_width=112)
    source.load_state_dict(torch.load(source_dir / "checkpoint_000.pt", weights_only=True))
    model, config = _fresh(seed=5)
    done = init_from(model, config, f"{source_dir}:0")
    assert not done.reinitialised and not done.new and not done.unused
    clip = torch.rand(1, 8, 3, 64, 112)
    with torch.no_grad():
        assert torch.allclose(model.eval()(clip)["logits"], source.eval()(clip)["logits"])


def test_init_from_names_what_is_wrong(tmp_path):
    source_dir = write_tiny_model(tmp_path / "src")
    model, config = _fresh()
    assert parse_init_from(f"{source_dir}:7") == (source_dir, 7)
    assert parse_init_from(str(source_dir)) == (source_dir, None)
    with pytest.raises(DataError, match="no checkpoint_007.pt"):
        init_from(model, config, f"{source_dir}:7")
    with pytest.raises(DataError, match="holds no config.json"):
        init_from(model, config, str(tmp_path))
    other = write_tiny_model(
        tmp_path / "fc-on-another-backbone", feature_arch="rn18", temporal_arch="fc", team=False
    )
    with pytest.raises(DataError, match="none of its weights fits this model"):
        init_from(*_fresh(feature_arch="rny002", temporal_arch="gru", classes=V2_CLASSES), str(other))
    # A model without a team head transfers into one with: the team head is new.
    no_team = write_tiny_model(tmp_path / "no-team", team=False)
    done = init_from(model, config, str(no_team))
    assert done.new == ["team_head.weight", "team_head.bias"]


def test_focal_loss_is_weighted_cross_entropy_at_gamma_0_and_spares_easy_frames():
    torch.manual_seed(0)
    logits = torch.randn(50, 4) * 3
    targets = F.softmax(torch.randn(50, 4) * 4, dim=-1)  # soft targets (mixup, label dilation)
    weight = torch.tensor([1.0, 5.0, 5.0, 5.0])
    assert torch.allclose(
        focal_loss(logits, targets, weight, 0.0), F.cross_entropy(logits, targets, weight=weight)
    )
    easy = torch.tensor([[8.0, 0.0, 0.0, 0.0]])
    hard = torch.tensor([[0.0, 8.0, 0.0, 0.0]])
    background = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    w = torch.ones(4)
    ratio_easy = focal_loss(easy, background, w, 2.0) / F.cross_entropy(easy, background)
    ratio_hard = focal_loss(hard, background, w, 2.0) / F.cross_entropy(hard, background)
    assert ratio_easy < 1e-3 and ratio_hard > 0.99


def test_the_backbone_gets_its_own_learning_rate():
    model, _ = _fresh()
    args = Namespace(learning_rate=1e-3, backbone_lr_mult=0.1)
    head, backbone = parameter_groups(model, args)
    assert backbone["lr"] == pytest.approx(1e-4) and "lr" not in head  # the head's: the optimizer's default
    assert {id(p) for p in backbone["params"]} == {id(p) for p in model.backbone.parameters()}
    assert len(head["params"]) + len(backbone["params"]) == len(list(model.parameters()))
    (single,) = parameter_groups(model, Namespace(learning_rate=1e-3, backbone_lr_mult=1.0))
    assert len(single["params"]) == len(list(model.parameters()))
