"""`python -m trainers.predict`: a SavedModel's predictions for a file or folder.

    python -m trainers.predict --model savedmodels/<run>/<method>/<version> \\
        --input houses.csv --output predictions.csv

The model's `assets.extra/keras_ssr.json` (written by
`keras_ssr.export.export_regressor`) says what it takes: table columns by name,
a feature matrix, images or texts. The input is read accordingly (a CSV, TSV
or Parquet table; a folder of images; for text models also a `.txt` file of
one text per line) and the output (CSV, or Parquet for a `.parquet` name) has
one row per predicted input row, in the input's order: `row` (the 0-based data
row of the input table, or `file` for images), the `--keep-columns` copied
from the input (e.g. an id, to join back), and `prediction` in target units.

By default only the rows whose target cell is empty are predicted, when the
input has the model's target column (the imputation use: the unlabeled rows
of the training file); `--all-rows` predicts every row.
"""

import argparse
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from datasets import table_files  # noqa: E402
from keras_ssr.export import read_metadata  # noqa: E402

PREDICTION = "prediction"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m trainers.predict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--model", required=True, help="a SavedModel folder written by the trainer")
    add(
        "--input",
        required=True,
        help="a CSV/TSV/Parquet table, an image folder, or a .txt of texts",
    )
    add("--output", required=True, help="a .csv or .parquet file to write")
    add(
        "--all-rows",
        action="store_true",
        help="predict every row (default: only the rows whose target is empty, "
        "when the input has the target column)",
    )
    add(
        "--keep-columns",
        default=None,
        help="input columns to copy into the output, comma-separated (e.g. an id)",
    )
    add(
        "--labels",
        default=None,
        help="image folders: the labels CSV; only images without a target are "
        "predicted (unless --all-rows)",
    )
    add("--batch-size", type=int, default=256, help="rows per model call")
    add("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size {args.batch_size} must be >= 1")
    return args


def predict_file(
    model,
    input,
    output=None,
    all_rows=False,
    keep_columns=None,
    labels=None,
    batch_size=256,
    progress=True,
):
    """Predictions of the SavedModel `model` for the file or folder `input`.

    Args:
        model: SavedModel folder with keras-ssr metadata.
        input: the table, image folder or text file.
        output: optional `.csv` / `.parquet` path to write.
        all_rows: predict every row, not only the rows without a target.
        keep_columns: input columns to copy (names or `"a,b"`).
        labels: labels table of an image folder.
        batch_size: rows per model call.
        progress: show a progress bar when there is more than one batch.

    Returns:
        A `pandas.DataFrame` of the predicted rows, in input order.

    Raises:
        FileNotFoundError: a missing model, input or labels file.
        ValueError: an input that does not match the model (missing column,
            non-numeric cells, ...), naming what to fix.
    """
    metadata = read_metadata(model)
    rows, inputs = _read_inputs(metadata, pathlib.Path(input), labels, all_rows)
    keep = table_files.column_list(keep_columns) or ()
    if keep and not isinstance(rows, pd.DataFrame):
        raise ValueError("--keep-columns applies to table inputs only.")
    if keep:
        table_files.require_columns(input, rows, keep, "column to keep")
    result = pd.DataFrame(
        {"row": rows.index.to_numpy()} if isinstance(rows, pd.DataFrame) else rows
    )
    for column in keep:
        result[column] = rows[column].to_numpy()
    result[PREDICTION] = _predict(model, metadata, inputs, batch_size, progress)
    if output is not None:
        write_table(result, output)
    return result


def _read_inputs(metadata, path, labels, all_rows):
    """`(rows, inputs)`: the rows kept (a DataFrame, or a dict of columns for
    images) and the model inputs (a dict of arrays by signature name)."""
    if metadata["inputs"] == "images":
        return _image_inputs(metadata, path, labels, all_rows)
    if metadata["inputs"] == "texts" and path.suffix.lower() == ".txt":
        texts = path.read_text(encoding="utf-8").splitlines()
        if len(metadata["shape"]) == 2:
            raise ValueError(
                f"{path}: this model takes sentence pairs; give a table with the "
                f"columns {metadata['feature_names']}."
            )
        frame = pd.DataFrame({metadata["feature_names"][0]: texts})
    else:
        frame = table_files.read_table(path)
    frame = _rows_to_predict(metadata, path, frame, all_rows)
    readers = {"columns": _column_inputs, "features": _feature_inputs}
    return frame, readers.get(metadata["inputs"], _text_inputs)(metadata, path, frame)


def _rows_to_predict(metadata, path, frame, all_rows):
    target = metadata.get("target")
    if all_rows or target not in frame.columns:
        return frame
    _, has_target = table_files.targets(path, frame, target)
    if has_target.all():
        raise ValueError(
            f"{path}: every row has a target in {target!r}, so there is no row to "
            "impute; pass --all-rows to predict every row."
        )
    return frame[~has_target]


def _column_inputs(metadata, path, frame):
    table_files.require_columns(path, frame, [c["name"] for c in metadata["columns"]])
    inputs = {}
    for column in metadata["columns"]:
        cells = frame[column["name"]]
        if column["kind"] == "categorical":
            inputs[column["key"]] = table_files.category_strings(cells).astype(str)
        else:
            inputs[column["key"]] = _numbers(path, column["name"], frame)
    return inputs


def _feature_inputs(metadata, path, frame):
    names = metadata.get("feature_names")
    if names is None:
        raise ValueError(
            "the model's metadata has no feature names: re-export it with the "
            "training data, export_regressor(regressor, export_dir, data)."
        )
    table_files.require_columns(path, frame, names, "feature column")
    features = np.stack([_numbers(path, n, frame) for n in names], axis=1)
    missing = ~np.isfinite(features)
    if missing.any():
        rows = np.flatnonzero(missing.any(axis=1))
        columns = [n for n, bad in zip(names, missing.any(axis=0), strict=True) if bad]
        raise ValueError(
            f"{path}: this model needs every feature: missing or infinite values in "
            f"{columns} on line(s) {table_files.lines(frame.index[rows])}. Impute "
            "or drop those rows."
        )
    return {"features": features}


def _numbers(path, name, frame):
    values, bad = table_files.numbers(frame[name])
    if bad.any():
        rows = frame.index[np.flatnonzero(bad)]
        raise ValueError(
            f"{path}: column {name!r} must hold numbers (empty = missing); not "
            f"numbers on line(s) {table_files.lines(rows)}."
        )
    return values.astype("float32")


def _text_inputs(metadata, path, frame):
    names = metadata["feature_names"]
    table_files.require_columns(path, frame, names, "text column")
    texts = frame[names].fillna("").astype(str).to_numpy(dtype=object)
    return {"texts": texts[:, 0] if len(metadata["shape"]) == 1 else texts}


def _image_inputs(metadata, path, labels, all_rows):
    from datasets import image_folder
    from datasets.image_files import decode_image_files

    files = image_folder.image_files(path)
    if labels is not None and not all_rows:
        table = image_folder.read_labels(labels, target=metadata.get("target"))
        labeled = {
            f for f, t in zip(table["files"], table["has_target"], strict=True) if t
        }
        files = [f for f in files if f not in labeled]
        if not files:
            raise ValueError(
                f"{path}: every image has a target in {labels}; pass --all-rows to "
                "predict every image."
            )
    _, height, width, channels = metadata["shape"]
    images, kept = decode_image_files(
        [path / f for f in files], (height, width), name=str(path)
    )
    if channels == 1:
        images = np.round(images.astype("float32") @ [0.2989, 0.587, 0.114])[..., None]
    rows = {"file": [f for f, k in zip(files, kept, strict=True) if k]}
    return rows, {"images": images.astype("float32")}


def _predict(model, metadata, inputs, batch_size, progress):
    import keras
    import tensorflow as tf

    serve = tf.saved_model.load(str(model)).signatures[metadata["signature"]]
    size = len(next(iter(inputs.values())))
    bar = (
        keras.utils.Progbar(size, unit_name="row")
        if progress and size > batch_size
        else None
    )
    outputs = []
    for start in range(0, size, batch_size):
        batch = {
            k: tf.constant(v[start : start + batch_size]) for k, v in inputs.items()
        }
        outputs.append(serve(**batch)[metadata["output"]].numpy().reshape(-1))
        if bar is not None:
            bar.update(min(start + batch_size, size))
    return np.concatenate(outputs) if outputs else np.zeros(0, "float32")


def write_table(frame, path):
    """Writes `frame` as Parquet (`.parquet`/`.pq`) or CSV (anything else)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in table_files.PARQUET_SUFFIXES:
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


def main(argv=None):
    """CLI entry point; returns the exit status (2 for bad input)."""
    args = parse_args(argv)
    try:
        result = predict_file(
            args.model,
            args.input,
            args.output,
            all_rows=args.all_rows,
            keep_columns=args.keep_columns,
            labels=args.labels,
            batch_size=args.batch_size,
            progress=not args.quiet,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{len(result)} prediction(s) written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
