"""Name -> loader registry for the tabular data sets keras-ssr ships."""

from datasets import california_housing, synthetic_two_group

DATASETS = {
    "california_housing": california_housing.load,
    "synthetic_two_group": synthetic_two_group.load,
}


def dataset_names():
    """Returns the registered data set names, sorted."""
    return tuple(sorted(DATASETS))


def load_dataset(name, **kwargs):
    """Loads a registered data set by name.

    Args:
        name: one of `dataset_names()`.
        **kwargs: passed to that data set's `load` function.

    Returns:
        A `RegressionData`.

    Raises:
        ValueError: if `name` is not registered (the message lists the names).

    Example:

    >>> data = load_dataset("synthetic_two_group", bias=0.5, seed=0)
    >>> data.name
    'synthetic_two_group'
    """
    if name not in DATASETS:
        raise ValueError(
            f"Unknown dataset {name!r}. Valid names: {', '.join(dataset_names())}."
        )
    return DATASETS[name](**kwargs)
