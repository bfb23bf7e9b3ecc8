"""A toy classification task whose primary metric is *maximised* — written as a user would add a
new task: its own task, data module and network, nothing edited in ace.

Each sample is one 3-vector ``x``; its class is the shell of ``|x|`` it lies in (rotation
invariant). f_eq classifies from ``|x|`` (invariant), f_neq reads raw ``x`` (not invariant).
Metrics: instance accuracy (primary, ``max``) and the mean per-class accuracy (``max``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset
from torchmetrics.classification import MulticlassAccuracy

from ace.core.equivariance import GroupAction
from ace.core.homotopic import HomotopicBranch
from ace.data.base import Task, TaskDataModule
from ace.data.metrics import MetricSpec
from ace.data.samplers import EpochShuffleSampler, stacked_loader

NUM_CLASSES = 3
EDGES = (1.0, 1.6)


class PointRotation(GroupAction):
    def batch_size(self, batch: dict) -> int:
        return batch["x"].shape[0]

    def reference_tensor(self, batch: dict) -> torch.Tensor:
        return batch["x"]

    def act_on_batch(self, batch: dict, g: torch.Tensor) -> dict:
        return {**batch, "x": torch.einsum("bij,bj->bi", g.to(batch["x"]), batch["x"])}

    def act_on_output(self, output: torch.Tensor, g: torch.Tensor, batch: Any) -> torch.Tensor:
        return output  # class scores are invariant


class ShellTask(Task):
    metrics = (
        MetricSpec("class_acc", "max",
                   partial(MulticlassAccuracy, num_classes=NUM_CLASSES, average="macro")),
        MetricSpec("acc", "max", partial(MulticlassAccuracy, num_classes=NUM_CLASSES,
                                         average="micro")),
    )
    primary_metric = "acc"  # not the first declared one: the declaration decides

    def __init__(self) -> None:
        self.group_action = PointRotation()

    def loss(self, pred: torch.Tensor, batch: dict) -> torch.Tensor:
        return nn.functional.cross_entropy(pred, batch["label"])

    def metric_inputs(self, pred: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return pred, batch["label"]


class ShellDataset(Dataset):
    def __init__(self, n: int, seed: int, label_shift: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 3, generator=g) * 0.9
        label = torch.bucketize(x.norm(dim=-1), torch.tensor(EDGES))
        self.tensors = {"x": x, "label": (label + label_shift) % NUM_CLASSES}

    def __len__(self) -> int:
        return self.tensors["x"].shape[0]

    def __getitems__(self, indices):
        idx = torch.as_tensor(indices)
        return {k: v[idx] for k, v in self.tensors.items()}


class ShellDataModule(TaskDataModule):
    """``test_label_shift`` relabels the test split (so test numbers visibly differ from val)."""

    def __init__(self, num_train: int = 256, num_eval: int = 128, batch_size: int = 32,
                 shuffle_seed: int = 0, test_label_shift: int = 0, train_transform=None,
                 eval_transform=None) -> None:
        super().__init__(train_transform, eval_transform)
        self.task = ShellTask()
        self.batch_size = batch_size
        self.datasets = {"train": ShellDataset(num_train, 1), "val": ShellDataset(num_eval, 2),
                         "test": ShellDataset(num_eval, 2, test_label_shift)}
        self.sampler = EpochShuffleSampler(num_train, shuffle_seed)

    def train_dataloader(self):
        return stacked_loader(self.datasets["train"], self.batch_size, sampler=self.sampler,
                              drop_last=True)

    def val_dataloader(self):
        return stacked_loader(self.datasets["val"], self.batch_size, shuffle=False)

    def test_dataloader(self):
        return stacked_loader(self.datasets["test"], self.batch_size, shuffle=False)


class ShellNet(nn.Module):
    """f_eq: MLP(|x|); f_neq: Linear(x) added with γ (one homotopic branch)."""

    def __init__(self, hidden: int = 16, ace_branches: bool = True) -> None:
        super().__init__()
        self.eq = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, NUM_CLASSES))
        self.branch = HomotopicBranch(nn.Linear(3, NUM_CLASSES)) if ace_branches else None

    def forward(self, batch: dict) -> torch.Tensor:
        x = batch["x"]
        out = self.eq(x.norm(dim=-1, keepdim=True))
        return self.branch(out, x) if self.branch is not None else out


#: the toy's own configs, as a user's configs/data/shell.yaml and model net would read
DATA_CFG = {"_target_": "tests.toy_task.ShellDataModule", "shuffle_seed": "${seed}",
            "train_transform": None, "eval_transform": None}
NET_CFG = {"_target_": "tests.toy_task.ShellNet", "hidden": 16, "ace_branches": True}
