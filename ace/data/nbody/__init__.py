"""Charged 5-body data: the bit-exact simulator (``simulator``), verified loading (``files``), the
in-memory split (``dataset``), group action and task (``task``) and the data module
(``datamodule``)."""

from ace.data.nbody.datamodule import NBodyDataModule
from ace.data.nbody.dataset import NBodyDataset
from ace.data.nbody.files import load_verified
from ace.data.nbody.simulator import (
    dataset_name,
    generate,
    generate_dataset,
    simulate_loop,
    simulate_split,
)
from ace.data.nbody.task import NBodyRotation, NBodyTask
from ace.data.samplers import EpochShuffleSampler, identity_collate

__all__ = [
    "EpochShuffleSampler", "NBodyDataModule", "NBodyDataset", "NBodyRotation", "NBodyTask",
    "identity_collate", "load_verified", "dataset_name", "generate", "generate_dataset",
    "simulate_loop", "simulate_split",
]
