"""Models of the ACE reproduction (equivariant f_eq with optional homotopic f_neq branches)."""

from ace.models.egno import EGNO
from ace.models.schnet import SchNetQM9
from ace.models.segnn import SEGNN, SEGNNNBody, SEGNNQM9
from ace.models.vn_dgcnn import VNDGCNN

__all__ = ["EGNO", "SEGNN", "SEGNNNBody", "SEGNNQM9", "SchNetQM9", "VNDGCNN"]
