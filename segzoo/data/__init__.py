"""Datasets, joint transforms and loaders. Importing registers every dataset and transform."""

from segzoo.data.ade20k import ADE20KDataset
from segzoo.data.base import SegDataset
from segzoo.data.camvid import CamVidDataset
from segzoo.data.cityscapes import CityscapesDataset
from segzoo.data.coco import COCODataset
from segzoo.data.folder import FolderDataset
from segzoo.data.instance_folder import InstanceFolderDataset
from segzoo.data.loader import build_dataloader, build_train_loader, collate_semantic
from segzoo.data.shapes import ShapesDataset
from segzoo.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_pipeline
from segzoo.data.voc import VOCDataset
from segzoo.paths import data_root, resolve_data_path
from segzoo.registry import DATASETS


def list_datasets() -> list[str]:
    """Registered dataset names, sorted."""
    return DATASETS.names()


def build_dataset(name: str, **kwargs) -> SegDataset:
    """Build the dataset registered as ``name`` (RegistryError lists close matches if unknown)."""
    return DATASETS.build(name, **kwargs)


__all__ = [
    "ADE20KDataset",
    "COCODataset",
    "CamVidDataset",
    "CityscapesDataset",
    "FolderDataset",
    "InstanceFolderDataset",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SegDataset",
    "ShapesDataset",
    "VOCDataset",
    "build_dataloader",
    "build_train_loader",
    "build_dataset",
    "build_pipeline",
    "collate_semantic",
    "data_root",
    "list_datasets",
    "resolve_data_path",
]
