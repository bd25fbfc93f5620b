"""Modality objects and the trainer's wiring of them: splits, loaders, views."""

import numpy as np
import pytest
import tensorflow as tf

from datasets.registry import get_dataset
from keras_ssr.data.regression_data import RegressionData
from keras_ssr.data.split import with_validation_rows as with_validation
from keras_ssr.data.target_scaler import TargetScaler
from keras_ssr.methods.registry import get_method
from keras_ssr.modalities import ImageModality, get_modality
from trainers.cli import parse_args
from trainers.experiment import load_data, make_split, modality_of


def _images(name="faces", n=40, split_rows=None):
    rng = np.random.default_rng(0)
    return RegressionData(
        rng.integers(0, 256, (n, 12, 12, 3), dtype="uint8"),
        rng.uniform(20, 60, n),
        ("pixels",),
        name,
        modality="image",
        split_rows=split_rows,
    )


def _protocol(validation=()):
    return {
        "train": np.arange(30),
        "validation": np.asarray(validation, "int64"),
        "test": np.arange(30, 40),
        "labeled_order": np.arange(30)[::-1],
    }


def _split(data, *argv):
    return make_split(data, parse_args(list(argv)), 0, get_method("supervised"))


def test_with_validation_carves_validation_out_of_train_only_when_missing():
    rows = with_validation(_protocol(), validation_ratio=0.2, seed=0)
    assert len(rows["validation"]) == 6
    assert not set(rows["validation"]) & set(rows["train"])
    assert set(rows["validation"]) | set(rows["train"]) == set(range(30))
    np.testing.assert_array_equal(rows["test"], np.arange(30, 40))
    # The labeling order keeps its order, minus the validation rows.
    expected = [r for r in range(29, -1, -1) if r not in set(rows["validation"])]
    np.testing.assert_array_equal(rows["labeled_order"], expected)
    given = _protocol(validation=[])
    given["validation"] = np.arange(40, 41)
    assert with_validation(given, 0.2, 0) is given


def test_make_split_keeps_the_protocol_test_rows_and_labels_its_order():
    data = _images(split_rows=_protocol(validation=[]), n=41)
    config = parse_args(["--num-labels", "5"])
    split = make_split(data, config, seed=3, entry=get_method("pseudo_label"))
    np.testing.assert_array_equal(split.test, np.arange(30, 40))
    order = with_validation(data.split_rows, config.data.validation_ratio, 3)
    np.testing.assert_array_equal(split.labeled, np.sort(order["labeled_order"][:5]))
    assert len(split.validation) == 3 and 40 not in split.train


def test_loader_flags_a_dataset_does_not_take_are_refused():
    config = parse_args(["--dataset", "california_housing", "--protocol", "hpl"])
    with pytest.raises(ValueError, match="--protocol does not apply"):
        load_data(config)
    with pytest.raises(SystemExit):
        parse_args(["--dataset", "nope"])


def test_backbone_must_match_the_modality():
    data = _images()
    assert modality_of(data, parse_args([])).backbone_name(data) == "small_cnn"
    with pytest.raises(ValueError, match="--backbone bilstm does not take image"):
        modality_of(data, parse_args(["--backbone", "bilstm"])).backbone_name(data)
    assert get_modality("image") is ImageModality


def test_image_regressor_takes_uint8_pixels_and_has_no_feature_scaling():
    data = _images()
    split = _split(data, "--label-ratio", "0.5")
    scaler = TargetScaler.fit(data.y[split.labeled])
    regressor = modality_of(data, parse_args([])).build_regressor(data, split, scaler)
    assert regressor.input_mean is None
    out = regressor(tf.constant(data.x[:4]))
    assert out.shape == (4, 1)
    spec = modality_of(data, parse_args([])).input_spec(data)
    assert spec.name == "images" and spec.shape.as_list() == [None, 12, 12, 3]


def test_angle_targets_get_orientation_preserving_views():
    data = _images(name="rotated_mnist")
    split = _split(data, "--label-ratio", "0.5")
    modality = modality_of(data, parse_args([]))
    angle_views = get_dataset("rotated_mnist").views
    views, augment = modality.make_views(data, split, None, config=angle_views)
    assert not views.flip and "rotate" not in views.ops and "shear_x" not in views.ops
    assert augment == views.weak
    faces_views, _ = modality.make_views(_images(), split, None)
    assert faces_views.flip and "rotate" in faces_views.ops


def test_unaugmented_image_views_keep_the_raw_weak_view():
    data = _images()
    split = _split(data, "--label-ratio", "0.5")
    modality = modality_of(data, parse_args([]))
    views, augment = modality.make_views(data, split, None, raw_weak=True)
    weak, strong = views(tf.constant(data.x[:4]), tf.constant([1, 2]))
    np.testing.assert_array_equal(weak.numpy(), data.x[:4].astype("float32"))
    assert augment is None and strong.shape == weak.shape


def _cli(tmp_path, *args):
    from trainers.run import main

    out, exported = tmp_path / "runs", tmp_path / "savedmodels"
    common = ["--epochs", "1", "--steps-per-epoch", "2", "--verbose", "0"]
    common += ["--output-dir", str(out), "--export-dir", str(exported)]
    assert main(common + ["--run-name", "r"] + list(args)) == 0
    return out / "r", exported / "r"


def test_image_dataset_trains_exports_and_serves_raw_pixels(tmp_path):
    run_dir, exported = _cli(
        tmp_path,
        *("--dataset", "rotated_mnist", "--methods", "pseudo_label"),
        *("--num-labels", "40", "--batch-size", "8", "--unlabeled-batch-size", "16"),
    )
    assert (run_dir / "results.json").exists()
    served = tf.saved_model.load(str(exported / "pseudo_label" / "1"))
    signature = served.signatures["serving_default"]
    images = tf.zeros((3, 28, 28, 1), tf.float32)
    assert signature(images=images)["predictions"].shape == (3, 1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="images must have"):
        signature(images=tf.zeros((3, 27, 28, 1), tf.float32))


def test_text_dataset_trains_with_file_synonyms_and_serves_raw_strings(tmp_path):
    synonyms = tmp_path / "synonyms.tsv"
    synonyms.write_text("good\tgreat\tfine\nbad\tpoor\n")
    run_dir, exported = _cli(
        tmp_path,
        *("--dataset", "vader_sentiment", "--methods", "pseudo_label"),
        *("--num-labels", "40", "--batch-size", "8", "--unlabeled-batch-size", "16"),
        *("--synonym-source", "file", "--synonym-file", str(synonyms)),
    )
    assert (run_dir / "results.json").exists()
    served = tf.saved_model.load(str(exported / "pseudo_label" / "1"))
    texts = tf.constant(["a good day", "a bad day"])
    out = served.signatures["serving_default"](texts=texts)["predictions"]
    assert out.shape == (2, 1) and np.all(np.isfinite(out.numpy()))
