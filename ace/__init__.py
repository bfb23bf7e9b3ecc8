"""ace: Adaptive Constrained Equivariance (NeurIPS 2025) in PyTorch + Lightning + Hydra."""

__version__ = "0.1.0"
