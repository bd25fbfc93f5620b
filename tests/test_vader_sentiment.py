"""The vendored VADER sentiment-intensity benchmark (text regression)."""

import io
import tarfile

import numpy as np
import pytest

from datasets import registry, vader_sentiment


@pytest.fixture(scope="module")
def data():
    return vader_sentiment.load()


def test_counts_per_source(data):
    # Hutto and Gilbert (2014): 4,200 tweets, 10,605 movie-review snippets,
    # 5,190 NYT editorial snippets, 3,708 Amazon review snippets.
    assert data.group_names == ("tweets", "movies", "nyt", "amazon")
    assert np.bincount(data.groups).tolist() == [4200, 10605, 5190, 3708]
    assert data.x.shape == (23703,) and data.modality == "text"


def test_scores_and_texts(data):
    assert -4.0 <= data.y.min() < -3.8 and 3.9 < data.y.max() <= 4.0
    # First line of tweets_GroundTruth.txt: "1\t2.726315789\tSomehow I was ...".
    assert data.x[0].startswith("Somehow I was blessed")
    assert data.y[0] == pytest.approx(2.726315789)
    assert all(isinstance(t, str) and "\t" not in t and "\r" not in t for t in data.x)


def test_split_is_disjoint_complete_stratified_and_seeded(data):
    rows = data.split_rows
    parts = [rows["train"], rows["validation"], rows["test"]]
    everything = np.concatenate(parts)
    assert len(everything) == len(np.unique(everything)) == data.num_rows
    for part, fraction in zip(parts, (0.8, 0.1, 0.1), strict=True):
        share = np.bincount(data.groups[part], minlength=4) / np.bincount(data.groups)
        np.testing.assert_allclose(share, fraction, atol=1e-3)
    again = vader_sentiment.stratified_split(data.groups, seed=0)
    np.testing.assert_array_equal(again["test"], rows["test"])
    other = vader_sentiment.stratified_split(data.groups, seed=1)
    assert not np.array_equal(other["test"], rows["test"])


def test_registered():
    assert "vader_sentiment" in registry.dataset_names()


def test_missing_archive_says_how_to_restore(tmp_path):
    with pytest.raises(FileNotFoundError, match="pip download"):
        vader_sentiment.read_ground_truth(tmp_path / "none.tar.xz")


def test_malformed_line_is_reported_by_file_and_line(tmp_path):
    path = tmp_path / "bad.tar.xz"
    with tarfile.open(path, "w:xz") as archive:
        raw = b"1\t0.5\tfine text\r\n2\t1.0 no tabs here\r\n"
        info = tarfile.TarInfo("tweets_GroundTruth.txt")
        info.size = len(raw)
        archive.addfile(info, io.BytesIO(raw))
    with pytest.raises(ValueError, match="tweets_GroundTruth.txt, line 2"):
        vader_sentiment.read_ground_truth(path)
