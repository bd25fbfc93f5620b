"""Own data in, predictions out: train, export, serve and `trainers.predict`."""

import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from datasets import image_folder, table, text_csv
from keras_ssr.data.split import SSRSplit
from keras_ssr.data.streams import make_train_stream
from keras_ssr.data.tabular_views import TabularViews
from keras_ssr.data.target_scaler import TargetScaler
from keras_ssr.export import export_regressor, read_metadata
from keras_ssr.methods.pseudo_label import PseudoLabel
from keras_ssr.models.mlp_backbone import MLPBackbone
from keras_ssr.models.ssr_regressor import SSRRegressor
from tests.fixtures_paper_datasets import write_jpeg
from trainers import predict


def _houses(path, n=300, seed=0):
    """A table with a numeric, a categorical and a missing-value column; 40 %
    of the rows have no price (the rows to impute)."""
    rng = np.random.default_rng(seed)
    rooms = rng.integers(1, 7, n).astype(float)
    area = 20 * rooms + rng.normal(0, 5, n)
    city = rng.choice(["Paris", "Lyon", "Nice"], n)
    price = 10 * area + np.where(city == "Paris", 300, 0) + rng.normal(0, 10, n)
    area[rng.random(n) < 0.1] = np.nan
    price[rng.random(n) < 0.4] = np.nan
    frame = pd.DataFrame(
        {
            "house_id": [f"h{i}" for i in range(n)],
            "rooms": rooms,
            "area (m2)": area,
            "city": city,
            "price": price,
        }
    )
    frame.to_csv(path, index=False)
    return frame


def _train(data, steps=30):
    """PseudoLabel on the data's own split, a few steps: the library path."""
    split = SSRSplit.from_data(data, seed=0)
    scaler = TargetScaler.fit(data.y[split.labeled])
    x_train = data.x[split.train]
    regressor = SSRRegressor(
        MLPBackbone((16,)),
        x_train.mean(0),
        x_train.std(0),
        None,
        scaler.mean,
        scaler.std,
    )
    model = PseudoLabel(regressor, unlabeled_weight=0.5, rampup_steps=5)
    model.build((None, data.num_features))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    stream = make_train_stream(
        (data.x[split.labeled], scaler.transform(data.y[split.labeled])),
        data.x[split.unlabeled],
        TabularViews.fit(x_train),
        labeled_batch_size=32,
        unlabeled_batch_size=64,
    )
    model.fit(stream, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0)
    return regressor


@pytest.fixture(scope="module")
def trained_table(tmp_path_factory):
    root = tmp_path_factory.mktemp("houses")
    frame = _houses(root / "houses.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = table.load(root / "houses.csv", "price", features="rooms,area (m2),city")
    regressor = _train(data)
    export_regressor(regressor, str(root / "model" / "1"), data)
    return root, frame, data, regressor


def test_served_table_model_takes_raw_columns_and_matches(trained_table, tmp_path):
    root, frame, data, regressor = trained_table
    metadata = read_metadata(root / "model" / "1")
    assert metadata["inputs"] == "columns" and metadata["target"] == "price"
    assert [c["key"] for c in metadata["columns"]] == ["rooms", "area__m2_", "city"]
    instances = {
        "rooms": frame["rooms"].to_numpy("float32"),
        "area__m2_": frame["area (m2)"].to_numpy("float32"),  # NaN = missing
        "city": frame["city"].to_numpy(str),
    }
    np.savez(tmp_path / "x.npz", **instances)
    script = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        serve = tf.saved_model.load({str(root / "model" / "1")!r}).signatures[
            "serving_default"]
        x = dict(np.load({str(tmp_path / "x.npz")!r}))
        y = serve(**{{k: tf.constant(v) for k, v in x.items()}})["predictions"]
        np.save({str(tmp_path / "y.npy")!r}, y.numpy())
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=180)
    served = np.load(tmp_path / "y.npy")
    expected = regressor.predict(data.x, verbose=0)
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-4)


def test_served_table_model_refuses_inf_and_imputes_nan(trained_table):
    root, _, data, regressor = trained_table
    serve = tf.saved_model.load(str(root / "model" / "1")).signatures["serving_default"]
    nan_row = serve(
        rooms=tf.constant([3.0]),
        area__m2_=tf.constant([np.nan]),
        city=tf.constant(["Paris"]),
    )["predictions"]
    encoded = data.input_encoder.encode(
        {"rooms": [3.0], "area (m2)": [np.nan], "city": np.array(["Paris"])}
    )
    np.testing.assert_allclose(nan_row, regressor.predict(encoded, verbose=0), 1e-5)
    assert np.isfinite(nan_row.numpy()).all()
    encoded = tf.saved_model.load(str(root / "model" / "1")).signatures[
        "serve_features"
    ](features=tf.constant(data.x))["predictions"]
    np.testing.assert_allclose(encoded, regressor.predict(data.x, verbose=0), 1e-5)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="'area \\(m2\\)' holds inf"
    ):
        serve(
            rooms=tf.constant([3.0]),
            area__m2_=tf.constant([np.inf]),
            city=tf.constant(["Paris"]),
        )


def test_predict_cli_imputes_the_rows_without_target(trained_table, tmp_path):
    root, frame, data, regressor = trained_table
    output = tmp_path / "out.csv"
    command = [
        sys.executable,
        "-m",
        "trainers.predict",
        "--model",
        str(root / "model" / "1"),
        "--input",
        str(root / "houses.csv"),
        "--output",
        str(output),
        "--keep-columns",
        "house_id",
        "--batch-size",
        "32",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "/row" in done.stdout  # the progress bar (several batches)
    result = pd.read_csv(output)
    unlabeled = np.flatnonzero(~data.has_target)
    assert list(result.columns) == ["row", "house_id", "prediction"]
    np.testing.assert_array_equal(result["row"], unlabeled)
    np.testing.assert_array_equal(result["house_id"], frame["house_id"][unlabeled])
    expected = regressor.predict(data.x[unlabeled], verbose=0).reshape(-1)
    np.testing.assert_allclose(result["prediction"], expected, rtol=1e-5, atol=1e-3)


def test_predict_all_rows_parquet_and_bad_inputs(trained_table, tmp_path):
    root, frame, data, regressor = trained_table
    model = root / "model" / "1"
    out = predict.predict_file(
        model,
        root / "houses.csv",
        tmp_path / "all.parquet",
        all_rows=True,
        progress=False,
    )
    assert len(out) == data.num_rows
    np.testing.assert_allclose(
        pd.read_parquet(tmp_path / "all.parquet")["prediction"],
        regressor.predict(data.x, verbose=0).reshape(-1),
        rtol=1e-5,
        atol=1e-3,
    )
    bad = tmp_path / "bad.csv"
    frame.drop(columns="city").to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"no column named 'city'.*'house_id'"):
        predict.predict_file(model, bad)
    frame.assign(rooms="many").to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"'rooms' must hold numbers.*line\(s\) 2, "):
        predict.predict_file(model, bad, all_rows=True)
    frame.assign(price=1.0).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="no row to impute; pass --all-rows"):
        predict.predict_file(model, bad)
    assert (
        predict.main(
            [
                "--model",
                str(tmp_path),
                "--input",
                str(bad),
                "--output",
                str(tmp_path / "o.csv"),
            ]
        )
        == 2
    )


def test_predict_features_model_refuses_missing_values(tmp_path):
    x = np.random.default_rng(0).normal(size=(20, 2)).astype("float32")
    y = x.sum(1)
    y[:5] = np.nan
    from keras_ssr.data.regression_data import RegressionData

    data = RegressionData(x, y, ("a", "b"), "plain", has_target=~np.isnan(y))
    regressor = SSRRegressor(MLPBackbone((4,)))
    regressor(x[:1])
    export_regressor(regressor, str(tmp_path / "m"), data)
    serve = tf.saved_model.load(str(tmp_path / "m")).signatures["serving_default"]
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="features hold NaN or inf"
    ):
        serve(features=tf.constant([[np.nan, 1.0]]))
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "target": y})
    frame.to_csv(tmp_path / "in.csv", index=False)
    out = predict.predict_file(tmp_path / "m", tmp_path / "in.csv", progress=False)
    np.testing.assert_array_equal(out["row"], np.arange(5))
    np.testing.assert_allclose(
        out["prediction"], regressor.predict(x[:5], verbose=0).reshape(-1), 1e-5
    )
    frame.loc[2, "b"] = np.nan
    frame.to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(ValueError, match=r"missing or infinite values in \['b'\] on "):
        predict.predict_file(tmp_path / "m", tmp_path / "in.csv")


def test_predict_image_folder_only_unlabeled_images(tmp_path):
    root = tmp_path / "photos"
    for i in range(4):
        write_jpeg(root / f"{i}.jpg", 40 * i)
    (tmp_path / "labels.csv").write_text("file,age\n0.jpg,1\n2.jpg,3\n")
    data = image_folder.load(root, labels=tmp_path / "labels.csv", image_size=8)
    from keras_ssr.models.small_cnn_backbone import SmallCNNBackbone

    regressor = SSRRegressor(SmallCNNBackbone((4,)), target_mean=2.0)
    regressor(data.x[:1].astype("float32"))
    export_regressor(regressor, str(tmp_path / "m"), data)
    assert read_metadata(tmp_path / "m")["shape"] == [None, 8, 8, 3]
    out = predict.predict_file(
        tmp_path / "m", root, labels=tmp_path / "labels.csv", progress=False
    )
    assert out["file"].tolist() == ["1.jpg", "3.jpg"]
    expected = regressor.predict(data.x[[1, 3]].astype("float32"), verbose=0)
    np.testing.assert_allclose(out["prediction"], expected.reshape(-1), 1e-5)
    every = predict.predict_file(tmp_path / "m", root, progress=False)
    assert every["file"].tolist() == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    serve = tf.saved_model.load(str(tmp_path / "m")).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="images hold NaN or inf"):
        serve(images=tf.fill((1, 8, 8, 3), np.nan))


def test_predict_text_model_from_table_and_txt(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("review,stars\ngreat film,5\ndull film,\nfine,3\nawful,\n")
    data = text_csv.load(path, "stars")
    from keras_ssr.models.bilstm_backbone import BiLSTMBackbone

    backbone = BiLSTMBackbone.from_texts(list(data.x), glove=False, lstm_units=4)
    regressor = SSRRegressor(backbone, target_mean=3.0)
    regressor(data.x[:1])
    export_regressor(regressor, str(tmp_path / "m"), data)
    out = predict.predict_file(tmp_path / "m", path, progress=False)
    np.testing.assert_array_equal(out["row"], [1, 3])
    expected = regressor.predict(data.x[[1, 3]], verbose=0).reshape(-1)
    np.testing.assert_allclose(out["prediction"], expected, 1e-5)
    (tmp_path / "new.txt").write_text("dull film\nawful\n")
    lines = predict.predict_file(tmp_path / "m", tmp_path / "new.txt", progress=False)
    np.testing.assert_allclose(lines["prediction"], expected, 1e-5)
