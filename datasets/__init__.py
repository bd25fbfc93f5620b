"""Data sets shipped with keras-ssr, each returned as a `RegressionData`."""

from datasets.registry import DATASETS, dataset_names, load_dataset

__all__ = ["DATASETS", "dataset_names", "load_dataset"]
