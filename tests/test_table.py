"""A user's own table: loader, encoder and the bad inputs (datasets.table)."""

import statistics

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from datasets import load_dataset, table
from datasets.table_files import AllRowsLabeledWarning, MissingValuesWarning
from keras_ssr.data.table_encoder import TableEncoder, signature_keys

CSV = """\
id,rooms,city,area,zip,price,region,Split
1,3,Paris,50,75001,100,north,train
2,,Lyon,40,69001,,south,TRAIN
3,4,Paris,,75002,120,north,test
4,2,Nice,30,06000,80,south,Validation
5,3,,45,75001,,north,train
6,5,Paris,70,75001,150,north,train
7,1,Lyon,20,69001,60,south,train
8,NA,Lille,35,59000,90,north,train
"""


@pytest.fixture
def houses(tmp_path):
    path = tmp_path / "houses.csv"
    path.write_text(CSV)
    return path


def _load(path, **kwargs):
    with pytest.warns(MissingValuesWarning):
        return table.load(path, "price", **kwargs)


def test_rows_with_an_empty_target_are_unlabeled_only(houses):
    data = _load(houses)
    np.testing.assert_array_equal(data.has_target, [1, 0, 1, 1, 0, 1, 1, 1])
    np.testing.assert_array_equal(data.y[[0, 2, 3]], [100, 120, 80])
    assert np.isnan(data.y[[1, 4]]).all()
    assert (data.num_with_target, data.num_without_target) == (6, 2)
    assert data.name == "houses" and data.target_name == "price"
    assert "6 with a target, 2 without" in data.describe()


def test_default_features_are_the_numeric_columns_but_target(houses):
    data = _load(houses)
    # id, rooms, area, zip are numeric; city, region, Split are text.
    assert data.feature_names == (
        "id",
        "rooms",
        "rooms:missing",
        "area",
        "area:missing",
        "zip",
    )
    assert data.input_encoder.input_keys == {
        "id": "id",
        "rooms": "rooms",
        "area": "area",
        "zip": "zip",
    }


def test_encoding_matches_an_independent_pandas_computation(houses):
    data = _load(houses, features="rooms,area,city,zip", categorical="zip")
    frame = pd.read_csv(houses, dtype={"zip": str})
    expected = pd.DataFrame(index=frame.index)
    for column in ("rooms", "area"):  # median of all rows (no split column)
        present = frame[column].dropna().tolist()
        expected[column] = frame[column].fillna(statistics.median(present))
        if frame[column].isna().any():
            expected[f"{column}:missing"] = frame[column].isna().astype(float)
    for column in ("city", "zip"):
        cells = frame[column].fillna("")
        counts = cells.value_counts()
        vocabulary = sorted(counts.index, key=lambda v: (-counts[v], v))
        for value in vocabulary:
            label = value if value else "(missing)"
            expected[f"{column}={label}"] = (cells == value).astype(float)
    assert data.feature_names == tuple(expected.columns)
    np.testing.assert_array_equal(data.x, expected.to_numpy("float32"))


def test_split_column_fits_the_encoder_on_train_rows_only(houses):
    data = _load(houses, features="rooms,area,city", split_column="Split")
    rows = data.split_rows
    np.testing.assert_array_equal(rows["train"], [0, 1, 4, 5, 6, 7])
    np.testing.assert_array_equal(rows["validation"], [3])
    np.testing.assert_array_equal(rows["test"], [2])
    medians = {c["name"]: c["median"] for c in data.input_encoder.numeric}
    assert medians == {
        "rooms": 3.0,
        "area": 42.5,
    }  # train rows: 3,3,5,1 / 50,40,45,70,20,35
    # area is missing only in a test row: imputed, but no indicator column.
    assert "area:missing" not in data.feature_names
    # Nice (validation only) is outside the train vocabulary: all zeros.
    city = [i for i, n in enumerate(data.feature_names) if n.startswith("city=")]
    np.testing.assert_array_equal(data.x[3, city], 0.0)


def test_rare_categories_share_the_other_column():
    columns = {"c": np.array(["a", "a", "a", "b", "b", "c", "d"], dtype=object)}
    encoder = TableEncoder.fit(columns, categorical=["c"], max_categories=2)
    assert encoder.feature_names == ("c=a", "c=b", "c=(other)")
    out = encoder.encode({"c": np.array(["a", "c", "zzz", "b"], dtype=object)})
    np.testing.assert_array_equal(out, [[1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0]])


def test_graph_encoding_equals_the_training_encoding(houses):
    data = _load(houses, features="rooms,area,city", split_column="Split")
    encoder = data.input_encoder
    frame = table.table_files.read_table(houses)
    columns = table._column_values(houses, frame, ["rooms", "area"], ["city"])
    graph = tf.function(encoder, input_signature=[encoder.input_specs()])
    np.testing.assert_array_equal(graph(encoder.as_inputs(columns)).numpy(), data.x)
    clone = TableEncoder.from_config(encoder.get_config())
    np.testing.assert_array_equal(clone.encode(columns), data.x)


def test_group_column_gives_per_group_ids(houses):
    data = _load(houses, group="region")
    assert data.group_names == ("north", "south")
    np.testing.assert_array_equal(data.groups, [0, 1, 0, 1, 0, 0, 1, 0])
    assert "region" not in data.feature_names


def test_parquet_gives_the_same_data_as_csv(houses, tmp_path):
    parquet = tmp_path / "houses.parquet"
    pd.read_csv(houses).to_parquet(parquet)
    a = _load(houses, features="rooms,area,city")
    b = _load(parquet, features="rooms,area,city")
    assert a.feature_names == b.feature_names
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.has_target, b.has_target)


def test_registered_as_csv(houses):
    with pytest.warns(MissingValuesWarning):
        data = load_dataset("csv", data_file=str(houses), target="price")
    assert data.num_without_target == 2


def test_missing_values_are_reported_per_column(houses):
    with pytest.warns(MissingValuesWarning) as record:
        table.load(houses, "price", features="rooms,area,city")
    message = str(record[0].message)
    assert "rooms: 2 missing (imputed with the median 3)" in message
    assert "area: 1 missing" in message and "city: 1 missing" in message


def test_signature_keys_are_valid_and_unique():
    assert signature_keys(["sale price", "sale_price", "2nd", "ok"]) == {
        "sale price": "sale_price",
        "sale_price": "sale_price_2",
        "2nd": "c_2nd",
        "ok": "ok",
    }


# ---- bad input ----


def _write(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv does not exist"):
        table.load(tmp_path / "nope.csv", "y")
    with pytest.raises(FileNotFoundError, match="is a directory"):
        table.load(tmp_path, "y")


def test_missing_columns_name_the_available_ones(houses):
    with pytest.raises(ValueError, match=r"no target column named 'cost'.*'price'"):
        table.load(houses, "cost")
    with pytest.raises(ValueError, match=r"no feature column named 'floor'.*'rooms'"):
        table.load(houses, "price", features="rooms,floor")
    with pytest.raises(ValueError, match="no split column named 'fold'"):
        table.load(houses, "price", split_column="fold")
    with pytest.raises(ValueError, match="no group column named 'area2'"):
        table.load(houses, "price", group="area2")
    with pytest.raises(ValueError, match="'price' cannot be a feature"):
        table.load(houses, "price", features="rooms,price")


def test_non_numeric_target_names_the_lines(tmp_path):
    path = _write(tmp_path, "x,y\n1,2\n2,abc\n3,\n4,n/a\n5,4..\n")
    with pytest.raises(
        ValueError,
        match=r"'y' must hold numbers.*2 cell\(s\).*line 3: 'abc', line 6: '4\.\.'",
    ):
        table.load(path, "y")


def test_all_rows_labeled_warns_with_the_counts(tmp_path):
    path = _write(tmp_path, "x,y\n1,2\n2,3\n3,4\n")
    with pytest.warns(AllRowsLabeledWarning, match="all 3 rows have a target in 'y'"):
        data = table.load(path, "y")
    assert data.num_without_target == 0


def test_no_labeled_row_is_refused(tmp_path):
    path = _write(tmp_path, "x,y\n1,\n2,\n")
    with pytest.raises(ValueError, match="none of the 2 rows has a target in 'y'"):
        table.load(path, "y")


def test_duplicate_column_names_are_refused(tmp_path):
    path = _write(tmp_path, "x,y,x\n1,2,3\n")
    with pytest.raises(ValueError, match=r"repeats column name\(s\) \['x'\]"):
        table.load(path, "y")


@pytest.mark.parametrize(
    "name, content",
    [
        ("bad.csv", b"\xff\xfe\x00garbage\x00\x81\x82"),
        ("bad.parquet", b"this is not parquet"),
        ("empty.csv", b""),
    ],
)
def test_unreadable_file_names_the_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"{name}: cannot read the file as"):
        table.load(path, "y")


def test_bad_split_values_and_untargeted_held_out_rows(tmp_path):
    path = _write(tmp_path, "x,y,s\n1,2,train\n2,3,holdout\n3,4,test\n")
    with pytest.raises(ValueError, match=r"holds \['holdout'\] on line\(s\) 3"):
        table.load(path, "y", split_column="s")
    path = _write(tmp_path, "x,y,s\n1,2,train\n2,,test\n3,4,test\n4,,train\n")
    with pytest.raises(
        ValueError, match=r"1 row\(s\) have no target but are test rows.*line\(s\) 3\."
    ):
        table.load(path, "y", split_column="s")


def test_inf_feature_and_empty_feature_column(tmp_path):
    path = _write(tmp_path, "x,z,y\n1,,2\ninf,,\n3,,4\n")
    with pytest.raises(ValueError, match=r"'x' holds inf on line\(s\) 3"):
        table.load(path, "y", features="x")
    with pytest.raises(ValueError, match="column 'z' has no value in any"):
        table.load(path, "y", features="z")
    text_only = _write(tmp_path, "name,y\na,1\nb,\n")
    with pytest.raises(ValueError, match="no numeric feature column"):
        table.load(text_only, "y")


def test_byte_order_mark_and_crlf_are_read(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffx,y\r\n1,2\r\n2,\r\n".encode())
    data = table.load(path, "y")
    assert data.feature_names == ("x",) and data.num_without_target == 1
