"""A user's table of texts (datasets.text_csv)."""

import numpy as np
import pytest

from datasets import load_dataset, text_csv
from datasets.table_files import AllRowsLabeledWarning, MissingValuesWarning


@pytest.fixture
def reviews(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text(
        "id,review,other,stars,src\n"
        '1,"Great, really great",x y,5,web\n'
        "2,dull,a b,,web\n"
        "3,,c d,2,shop\n"
        "4,fine I guess,e f,3,shop\n"
    )
    return path


def test_single_texts_with_unlabeled_rows(reviews):
    with pytest.warns(MissingValuesWarning, match="review: 1"):
        data = text_csv.load(reviews, "stars", text_column="review", group="src")
    assert data.modality == "text" and data.x.shape == (4,)
    assert data.x[0] == "Great, really great" and data.x[2] == ""
    np.testing.assert_array_equal(data.has_target, [1, 0, 1, 1])
    assert data.feature_names == ("review",) and data.group_names == ("shop", "web")


def test_sentence_pairs(reviews):
    with pytest.warns(MissingValuesWarning):
        data = text_csv.load(reviews, "stars", text_columns="review,other")
    assert data.x.shape == (4, 2) and data.x[1, 1] == "a b"
    assert data.feature_names == ("review", "other")


def test_registered_and_bad_cases(reviews, tmp_path):
    with pytest.warns(MissingValuesWarning):
        data = load_dataset(
            "text_csv", data_file=str(reviews), target="stars", text_column="review"
        )
    assert data.num_without_target == 1
    with pytest.raises(ValueError, match=r"Text columns found: 'review', 'other'"):
        text_csv.load(reviews, "stars")
    with pytest.raises(ValueError, match=r"no text column named 'body'.*'review'"):
        text_csv.load(reviews, "stars", text_column="body")
    with pytest.raises(ValueError, match="takes two columns"):
        text_csv.load(reviews, "stars", text_columns="review")
    with pytest.raises(ValueError, match=r"no target column named 'rating'"):
        text_csv.load(reviews, "rating", text_column="review")
    bad = tmp_path / "bad.csv"
    bad.write_text("t,y\nhello,five\n")
    with pytest.raises(ValueError, match=r"must hold numbers.*line 2: 'five'"):
        text_csv.load(bad, "y")
    bad.write_text("t,y\nhello,\n")
    with pytest.raises(ValueError, match="none of the 1 rows has a target"):
        text_csv.load(bad, "y")
    bad.write_text("t,y\nhello,1\nbye,2\n")
    with pytest.warns(AllRowsLabeledWarning, match="all 2 rows"):
        text_csv.load(bad, "y")
    bad.write_text("t,y,t\nhello,1,x\n")
    with pytest.raises(ValueError, match="repeats column name"):
        text_csv.load(bad, "y")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        text_csv.load(tmp_path / "none.csv", "y")
