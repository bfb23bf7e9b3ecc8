"""Lightning orchestration: the ACE LightningModule, the training pipeline and result files."""

from ace.training.module import ACEModule, NonFiniteLossError

__all__ = ["ACEModule", "NonFiniteLossError"]
