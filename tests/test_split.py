import numpy as np
import pytest

from keras_ssr.data.regression_data import RegressionData
from keras_ssr.data.split import SSRSplit, resolve_num_labels


def _all(split):
    return np.concatenate(
        [split.labeled, split.unlabeled, split.validation, split.test]
    )


def test_sizes_and_disjoint_cover():
    split = SSRSplit.from_size(1000, label_ratio=0.05, seed=3)
    assert split.sizes() == {
        "labeled": 35,
        "unlabeled": 665,
        "validation": 100,
        "test": 200,
    }
    everything = _all(split)
    assert len(np.unique(everything)) == len(everything) == 1000


def test_num_labels_and_same_test_set_for_every_ratio():
    a = SSRSplit.from_size(500, num_labels=7, seed=1)
    b = SSRSplit.from_size(500, label_ratio=0.5, seed=1)
    assert len(a.labeled) == 7 and len(b.labeled) == 175
    np.testing.assert_array_equal(a.test, b.test)
    np.testing.assert_array_equal(a.validation, b.validation)


def test_deterministic_per_seed_and_different_across_seeds():
    a = SSRSplit.from_size(300, label_ratio=0.1, seed=0)
    b = SSRSplit.from_size(300, label_ratio=0.1, seed=0)
    c = SSRSplit.from_size(300, label_ratio=0.1, seed=1)
    np.testing.assert_array_equal(_all(a), _all(b))
    assert not np.array_equal(a.labeled, c.labeled)


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5])
def test_label_ratio_outside_unit_interval_is_refused(ratio):
    with pytest.raises(ValueError, match=r"outside \(0, 1\]"):
        SSRSplit.from_size(100, label_ratio=ratio)


def test_label_count_above_train_size_is_refused():
    with pytest.raises(ValueError, match=r"num_labels=71 is outside \[1, 70\]"):
        SSRSplit.from_size(100, num_labels=71)
    assert resolve_num_labels(70, num_labels=70) == 70


def test_exactly_one_of_ratio_and_count():
    with pytest.raises(ValueError, match="exactly one"):
        resolve_num_labels(10, label_ratio=0.5, num_labels=2)


def test_from_parts_refuses_overlap_and_empty_labeled():
    with pytest.raises(ValueError, match="overlap"):
        SSRSplit.from_parts([0, 1], [1, 2], [3], [4])
    with pytest.raises(ValueError, match="labeled part is empty"):
        SSRSplit.from_parts([], [1, 2], [3], [4])


def test_nan_and_inf_targets_are_refused_naming_rows():
    y = np.arange(30, dtype="float32")
    y[[4, 17]] = [np.nan, np.inf]
    with pytest.raises(
        ValueError, match=r"2 row\(s\) have NaN or inf in y.*rows 4, 17"
    ):
        RegressionData(np.zeros((30, 2)), y, ("a", "b"), name="toy")


def test_nan_features_are_refused():
    x = np.zeros((5, 2))
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"1 row\(s\) .* x \(features\): rows 3"):
        RegressionData(x, np.zeros(5), ("a", "b"), name="toy")


def _protocol_rows(order=None):
    rows = {"train": np.arange(20), "validation": [20, 21], "test": [22, 23]}
    if order is not None:
        rows["labeled_order"] = order
    return rows


def test_from_protocol_labels_the_first_rows_of_the_protocol_order():
    order = np.random.default_rng(5).permutation(20)
    split = SSRSplit.from_protocol(_protocol_rows(order), num_labels=6, seed=3)
    np.testing.assert_array_equal(split.labeled, np.sort(order[:6]))
    np.testing.assert_array_equal(split.unlabeled, np.sort(order[6:]))
    np.testing.assert_array_equal(split.validation, [20, 21])
    # The protocol's order fixes the labeled set whatever the seed.
    again = SSRSplit.from_protocol(_protocol_rows(order), num_labels=6, seed=9)
    np.testing.assert_array_equal(again.labeled, split.labeled)


def test_from_protocol_without_order_draws_per_seed_within_train():
    a = SSRSplit.from_protocol(_protocol_rows(), label_ratio=0.25, seed=0)
    b = SSRSplit.from_protocol(_protocol_rows(), label_ratio=0.25, seed=1)
    assert len(a.labeled) == 5 and set(a.labeled) <= set(range(20))
    assert not np.array_equal(a.labeled, b.labeled)
    with pytest.raises(ValueError, match="outside \\[1, 20\\]"):
        SSRSplit.from_protocol(_protocol_rows(), num_labels=21)


def _data(**kwargs):
    return RegressionData(
        x=np.zeros((24, 2), "float32"),
        y=np.zeros(24),
        feature_names=("a", "b"),
        name="toy",
        **kwargs,
    )


def test_regression_data_checks_protocol_rows():
    with pytest.raises(ValueError, match="overlap"):
        _data(split_rows={"train": [0, 1], "validation": [1], "test": [2]})
    with pytest.raises(ValueError, match="outside"):
        _data(split_rows={"train": [0], "validation": [1], "test": [24]})
    with pytest.raises(ValueError, match="permutation"):
        _data(
            split_rows={
                "train": [0, 1],
                "validation": [2],
                "test": [3],
                "labeled_order": [0, 5],
            }
        )


def test_regression_data_modalities_keep_pixels_and_strings():
    images = RegressionData(
        np.zeros((3, 4, 4, 1), "uint8"),
        np.zeros(3),
        ("pixels",),
        "img",
        modality="image",
    )
    assert images.x.dtype == np.uint8 and images.input_shape == (4, 4, 1)
    pairs = RegressionData(
        np.array([["a b", "c"]] * 3),
        np.zeros(3),
        ("pair",),
        "txt",
        modality="text",
    )
    assert pairs.x.dtype == object and pairs.input_shape == (2,)
    with pytest.raises(ValueError, match="image inputs must have shape"):
        RegressionData(np.zeros((3, 4)), np.zeros(3), ("p",), "img", modality="image")
    with pytest.raises(ValueError, match="unknown modality"):
        RegressionData(np.zeros((3, 4)), np.zeros(3), ("p",), "x", modality="audio")
