"""Cohort prototype: a member trained in a cohort is the trial trained alone (float tolerance)."""

from __future__ import annotations

import pytest
import torch

from regtune.config import RegConfig
from regtune.nn.cohort import CohortTrainer
from regtune.nn.models import build_model
from regtune.nn.regularizers import build_regularizers
from regtune.nn.trainer import Trainer


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 12, generator=g)
    return X, (X[:, :3].sum(1) + 0.5 * torch.randn(n, generator=g) > 0).long() + (X[:, 3] > 1).long()


def _build(config: RegConfig) -> torch.nn.Module:
    return build_model(config, 12, 3)


def _members(optimizer: str) -> list[RegConfig]:
    """Three trials of one structure: their lr, L2, weight decay and label smoothing differ."""
    return [RegConfig(hidden_layer_sizes=(16, 16), batch_size=32, max_epochs=4, optimizer=optimizer, lr=lr, l2=l2,
                      weight_decay=wd, label_smoothing=ls)
            for lr, l2, wd, ls in ((1e-3, 0.0, 0.0, 0.0), (3e-3, 1e-3, 0.0, 0.1), (1e-2, 0.0, 1e-2, 0.0))]


MEMBERS = _members("adamw")


@pytest.mark.parametrize("optimizer", ["adamw", "adam"])  # decay in torch's AdamW, or Adam plus a hook
def test_a_cohort_member_trains_like_the_same_trial_alone(optimizer: str) -> None:
    X, y = _data(200, 0)
    Xv, yv = _data(80, 1)
    seeds = [11, 22, 33]
    members = _members(optimizer)
    cohort = CohortTrainer(_build, members, X, y, Xv, yv, seeds=seeds)
    while not cohort.done:
        cohort.step()
    assert len({h[-1]["train_loss"] for h in cohort.history}) == 3  # three different trials
    for k, (config, seed) in enumerate(zip(members, seeds, strict=True)):
        regs = build_regularizers(config, n_classes=3, image_shape=None)
        solo = Trainer(lambda config=config: _build(config), config, X, y, Xv, yv, task="classification",
                       regularizers=regs, seed=seed)
        while not solo.done:
            solo.step()
        for mine, alone in zip(cohort.history[k], solo.history, strict=True):
            for key in ("train_loss", "val_loss", "val_score"):
                assert mine[key] == pytest.approx(alone[key], rel=1e-4, abs=1e-5), (k, mine["epoch"], key)
        member = cohort.member(k, _build)
        for (name, p), q in zip(solo.model.state_dict().items(), member.state_dict().values(), strict=True):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=f"member {k}: {name}")


def test_members_must_share_the_structure() -> None:
    X, y = _data(50, 0)
    other = RegConfig(hidden_layer_sizes=(8,), batch_size=32, max_epochs=4, optimizer="adamw")
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        CohortTrainer(_build, [MEMBERS[0], other], X, y, X, y, seeds=[0, 1])
    noisy = RegConfig(hidden_layer_sizes=(16, 16), batch_size=32, max_epochs=4, optimizer="adamw", dropout=0.2)
    with pytest.raises(ValueError, match="deterministic|varies only"):
        CohortTrainer(_build, [MEMBERS[0], noisy], X, y, X, y, seeds=[0, 1])
