"""Charged 5-body data: the bit-exact simulator (``simulator``) and the Lightning data module."""

from ace.data.nbody.datamodule import (
    EpochShuffleSampler,
    NBodyDataModule,
    NBodyDataset,
    NBodyRotation,
    NBodyTask,
    identity_collate,
    load_verified,
)
from ace.data.nbody.simulator import (
    dataset_name,
    generate,
    generate_dataset,
    simulate_loop,
    simulate_split,
)

__all__ = [
    "EpochShuffleSampler", "NBodyDataModule", "NBodyDataset", "NBodyRotation", "NBodyTask",
    "identity_collate", "load_verified", "dataset_name", "generate", "generate_dataset",
    "simulate_loop", "simulate_split",
]
