"""Dataset registry: digits (bundled with sklearn), toy 2-D sets, Li & Li patches, and MNIST / Fashion-MNIST /
CIFAR-10 / SVHN from their standard files.

>>> from core.data import load_dataset
>>> ds = load_dataset("digits", "test")
>>> ds.input_shape, ds.num_classes
((1, 8, 8), 10)

Importing this package registers every dataset in :data:`DATASETS`.
"""

from core.data.registry import (
    DATASETS,
    Dataset,
    DatasetSpec,
    LoadedData,
    dataset_info,
    load_dataset,
    register_dataset,
)
from core.data import synthetic as _synthetic  # noqa: F401  (registers digits and the toy sets)
from core.data import patches as _patches  # noqa: F401  (registers patches)
from core.data.files import download_dataset, missing_files, verify_dataset

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetSpec",
    "LoadedData",
    "dataset_info",
    "download_dataset", "missing_files",
    "load_dataset",
    "register_dataset",
    "verify_dataset",
]
