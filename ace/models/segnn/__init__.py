"""SEGNN (Brandstetter et al., 2022) with optional ACE homotopic branches (``experiments.md`` §1–2)."""

from ace.models.segnn.irreps import balanced_irreps, fc_weight_numel, weight_balanced_irreps
from ace.models.segnn.layout import concat_channels, to_channels_last, to_e3nn
from ace.models.segnn.nbody import SEGNNNBody, fully_connected_edge_index
from ace.models.segnn.norm import InstanceNorm
from ace.models.segnn.qm9 import SEGNNQM9
from ace.models.segnn.segnn import SEGNN, SEGNNLayer, ace_update_mlp
from ace.models.segnn.tensor_product import O3TensorProduct, O3TensorProductSwishGate, pair_layout

__all__ = [
    "SEGNN",
    "SEGNNLayer",
    "SEGNNNBody",
    "SEGNNQM9",
    "InstanceNorm",
    "O3TensorProduct",
    "O3TensorProductSwishGate",
    "ace_update_mlp",
    "balanced_irreps",
    "concat_channels",
    "pair_layout",
    "to_channels_last",
    "to_e3nn",
    "fc_weight_numel",
    "fully_connected_edge_index",
    "weight_balanced_irreps",
]
