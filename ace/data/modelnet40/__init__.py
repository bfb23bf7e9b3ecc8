"""ModelNet40 point-cloud classification (VN-DGCNN, ``experiments.md`` §5): the two on-disk
formats and their verified download (``files``), a synthetic stand-in (``synthetic``, not
ModelNet40), the stratified validation split (``splits``), point dropout (``transforms``), the
group action and task (``task``) and the Lightning data module (``datamodule``)."""

from ace.data.modelnet40.datamodule import SOURCES, ModelNet40DataModule
from ace.data.modelnet40.dataset import PointCloudDataset
from ace.data.modelnet40.files import FORMATS, PUBLISHED_MD5, ensure_modelnet40
from ace.data.modelnet40.readers import load_modelnet40, load_normal_resampled, load_ply_hdf5
from ace.data.modelnet40.splits import stratified_split
from ace.data.modelnet40.synthetic import make_synthetic_pointclouds
from ace.data.modelnet40.task import ModelNet40Task, PointCloudRotation
from ace.data.modelnet40.transforms import RandomPointDropout

__all__ = [
    "FORMATS", "ModelNet40DataModule", "ModelNet40Task", "PUBLISHED_MD5", "PointCloudDataset",
    "PointCloudRotation", "RandomPointDropout", "SOURCES", "ensure_modelnet40", "load_modelnet40",
    "load_normal_resampled", "load_ply_hdf5", "make_synthetic_pointclouds", "stratified_split",
]
