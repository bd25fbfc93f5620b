import numpy as np
import pytest

from keras_ssr.data.regression_data import RegressionData
from keras_ssr.data.split import SSRSplit, resolve_num_labels, with_validation_rows


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


# ---- rows without a target (unlabeled-only rows) ----


def _targets(n, missing):
    y = np.arange(n, dtype="float32")
    y[missing] = np.nan
    return y, ~np.isnan(y)


def test_regression_data_keeps_rows_without_target_as_nan():
    y, has_target = _targets(6, [1, 4])
    data = RegressionData(np.zeros((6, 1)), y, ("a",), "toy", has_target=has_target)
    assert data.num_with_target == 4 and data.num_without_target == 2
    np.testing.assert_array_equal(data.has_target, [1, 0, 1, 1, 0, 1])
    # A value given for a row marked as target-less is not kept.
    y[1] = 7.0
    data = RegressionData(np.zeros((6, 1)), y, ("a",), "toy", has_target=has_target)
    assert np.isnan(data.y[1]) and data.y[2] == 2.0
    assert "4 with a target, 2 without" in data.describe()


def test_nan_target_without_has_target_is_refused_with_a_hint():
    y, _ = _targets(5, [3])
    with pytest.raises(ValueError, match=r"rows 3\. .*has_target=~np.isnan\(y\)"):
        RegressionData(np.zeros((5, 1)), y, ("a",), "toy")


def test_inf_target_is_refused_even_with_has_target():
    y, has_target = _targets(6, [1])
    y[4] = np.inf
    with pytest.raises(ValueError, match=r"1 row\(s\) have NaN or inf in y.*rows 4"):
        RegressionData(np.zeros((6, 1)), y, ("a",), "toy", has_target=has_target)
    with pytest.raises(ValueError, match="bool array of shape"):
        RegressionData(np.zeros((6, 1)), y, ("a",), "toy", has_target=[1, 0])


def test_protocol_rows_without_target_must_be_train_rows():
    y, has_target = _targets(8, [2, 6, 7])
    rows = {"train": [0, 1, 2, 3], "validation": [4, 6], "test": [5, 7]}
    with pytest.raises(ValueError, match=r"toy: 1 validation row\(s\) .*rows 6\."):
        RegressionData(
            np.zeros((8, 1)), y, ("a",), "toy", has_target=has_target, split_rows=rows
        )


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("labels", [{"label_ratio": 0.1}, {"num_labels": 9}])
def test_from_targets_with_every_target_is_from_size(seed, labels):
    a = SSRSplit.from_targets(np.ones(97, bool), seed=seed, **labels)
    b = SSRSplit.from_size(97, seed=seed, **labels)
    for part in ("labeled", "unlabeled", "validation", "test"):
        np.testing.assert_array_equal(getattr(a, part), getattr(b, part))


def test_from_targets_holds_out_only_rows_with_a_target():
    # 20 rows, rows 10-19 have no target: 10 with a target -> 2 test, 1 val.
    has_target = np.arange(20) < 10
    split = SSRSplit.from_targets(
        has_target, validation_ratio=0.1, test_ratio=0.2, seed=4
    )
    assert split.sizes() == {"labeled": 7, "unlabeled": 10, "validation": 1, "test": 2}
    np.testing.assert_array_equal(split.unlabeled, np.arange(10, 20))
    held_out = np.concatenate([split.validation, split.test])
    assert set(held_out) | set(split.labeled) == set(range(10))
    # Subsampling the labels: the other rows with a target become unlabeled.
    sub = SSRSplit.from_targets(
        has_target, num_labels=3, validation_ratio=0.1, test_ratio=0.2, seed=4
    )
    np.testing.assert_array_equal(sub.test, split.test)
    assert len(sub.labeled) == 3 and set(sub.labeled) <= set(split.labeled)
    assert set(sub.unlabeled) == set(range(10, 20)) | (
        set(split.labeled) - set(sub.labeled)
    )
    # Seeded: the same seed gives the same split.
    again = SSRSplit.from_targets(
        has_target, validation_ratio=0.1, test_ratio=0.2, seed=4
    )
    np.testing.assert_array_equal(again.labeled, split.labeled)


def test_from_targets_refuses_no_target_and_too_few_rows():
    with pytest.raises(ValueError, match="No row has a target"):
        SSRSplit.from_targets(np.zeros(5, bool))
    with pytest.raises(ValueError, match="leave no labeled training rows out of the 2"):
        SSRSplit.from_targets(np.arange(5) < 2, validation_ratio=0.5, test_ratio=0.5)
    with pytest.raises(ValueError, match=r"num_labels=9 is outside \[1, 7\]"):
        SSRSplit.from_targets(np.arange(20) < 10, num_labels=9)


def test_from_protocol_labels_only_train_rows_with_a_target():
    has_target = np.ones(12, bool)
    has_target[[1, 4, 9]] = False  # 1 and 4 are train rows, 9 is a train row too
    rows = {"train": np.arange(10), "validation": [10], "test": [11]}
    split = SSRSplit.from_protocol(rows, seed=0, has_target=has_target)
    np.testing.assert_array_equal(split.labeled, [0, 2, 3, 5, 6, 7, 8])
    np.testing.assert_array_equal(split.unlabeled, [1, 4, 9])
    sub = SSRSplit.from_protocol(rows, num_labels=2, seed=0, has_target=has_target)
    assert len(sub.labeled) == 2 and set(sub.labeled) <= {0, 2, 3, 5, 6, 7, 8}
    assert {1, 4, 9} <= set(sub.unlabeled) and len(sub.unlabeled) == 8
    # A protocol order keeps its order among the rows with a target.
    order = np.array([9, 1, 8, 7, 6, 5, 4, 3, 2, 0])
    ordered = SSRSplit.from_protocol(
        dict(rows, labeled_order=order), num_labels=2, has_target=has_target
    )
    np.testing.assert_array_equal(ordered.labeled, [7, 8])
    has_target[11] = False
    with pytest.raises(ValueError, match=r"1 test row\(s\) have no target: rows 11"):
        SSRSplit.from_protocol(rows, seed=0, has_target=has_target)


def test_from_data_draws_validation_only_from_rows_with_a_target():
    y, has_target = _targets(30, np.arange(10))  # rows 0-9 have no target
    rows = {"train": np.arange(25), "validation": [], "test": np.arange(25, 30)}
    data = RegressionData(
        np.zeros((30, 1)), y, ("a",), "toy", has_target=has_target, split_rows=rows
    )
    split = SSRSplit.from_data(data, validation_ratio=0.2, seed=1)
    assert len(split.validation) == 3 and set(split.validation) <= set(range(10, 25))
    np.testing.assert_array_equal(split.test, np.arange(25, 30))
    np.testing.assert_array_equal(split.unlabeled, np.arange(10))
    assert len(split.labeled) == 12
    plain = SSRSplit.from_data(
        RegressionData(np.zeros((30, 1)), y, ("a",), "t", has_target=has_target),
        label_ratio=0.5,
        seed=2,
    )
    assert set(plain.test) | set(plain.validation) <= set(range(10, 30))
    assert plain.sizes() == {"labeled": 7, "unlabeled": 17, "validation": 2, "test": 4}


def test_with_validation_rows_moves_train_rows_and_keeps_the_order():
    order = np.random.default_rng(0).permutation(40)
    rows = {
        "train": np.arange(40),
        "validation": [],
        "test": [40, 41],
        "labeled_order": order,
    }
    out = with_validation_rows(rows, 0.1, seed=3)
    assert len(out["validation"]) == 4 and set(out["validation"]) <= set(range(40))
    np.testing.assert_array_equal(
        np.sort(np.concatenate([out["train"], out["validation"]])), np.arange(40)
    )
    np.testing.assert_array_equal(
        out["labeled_order"], [r for r in order if r not in out["validation"]]
    )
    again = with_validation_rows(rows, 0.1, seed=3)
    np.testing.assert_array_equal(again["validation"], out["validation"])
    assert with_validation_rows(out, 0.1, seed=3) is out  # has validation rows


def test_all_labeled_keeps_rows_without_target_unlabeled():
    has_target = np.arange(10) != 3
    split = SSRSplit.from_parts([0, 1], [2, 3, 4], [5], [6]).all_labeled(has_target)
    np.testing.assert_array_equal(split.labeled, [0, 1, 2, 4])
    np.testing.assert_array_equal(split.unlabeled, [3])
