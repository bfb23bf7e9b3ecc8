"""Models of the ACE reproduction (equivariant f_eq with optional homotopic f_neq branches)."""

from ace.models.segnn import SEGNN, SEGNNNBody

__all__ = ["SEGNN", "SEGNNNBody"]
