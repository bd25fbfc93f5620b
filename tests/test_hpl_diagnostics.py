import glob
import json

import numpy as np
import pytest
import tensorflow as tf

from keras_ssr.callbacks.hpl_diagnostics import (
    HPLDiagnostics,
    group_means,
    spearman,
)
from keras_ssr.methods.hpl import HPL
from tests.helpers import compiled, linear_problem, make_regressor


def test_spearman_against_hand_values():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert spearman(a, a**3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    # Ranks (0,1,2,3,4) vs (1,0,3,2,4): 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 0.8.
    assert spearman(a, np.array([2.0, 1.0, 4.0, 3.0, 5.0])) == pytest.approx(0.8)
    assert spearman(a, np.ones(5)) == 0.0


def test_diagnostics_stats_and_event_files(tmp_path):
    x, y = linear_problem(n=300)
    model = compiled(HPL, make_regressor(target_mean=1.0, target_std=2.0))
    views = lambda x, seed: (x, x + 0.1)  # noqa: E731
    callback = HPLDiagnostics(str(tmp_path), x, views, unlabeled_y=y, num_samples=100)
    callback.set_model(model)
    stats = callback.compute(model)
    yhat = model.regressor(callback.weak).numpy().ravel()
    np.testing.assert_allclose(stats["error"], np.abs(yhat - callback.y), rtol=1e-5)
    r = model.regressor.standardized(callback.strong)
    z = model.uncertainty_learner((r, model.regressor.standardized(callback.weak)))
    np.testing.assert_allclose(stats["sigma2"], np.exp(z.numpy().ravel()), rtol=1e-5)
    callback.on_epoch_end(0)
    callback.on_train_end()
    tags = set()
    for path in glob.glob(str(tmp_path / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags |= {v.tag for v in event.summary.value}
    assert tags == {
        "hpl/sigma2",
        "hpl/mean_log_variance",
        "hpl/spearman_sigma2_vs_error",
        "hpl/sigma2_vs_error",
    }


def test_without_ground_truth_only_variances_are_written(tmp_path):
    x, _ = linear_problem(n=50)
    model = compiled(HPL, make_regressor())
    callback = HPLDiagnostics(str(tmp_path), x, lambda x, seed: (x, x))
    assert set(callback.compute(model)) == {"sigma2"}


def test_spearman_averages_tied_ranks():
    # Average ranks of (1, 1, 2) are (0.5, 0.5, 2): Pearson with (0, 1, 2).
    expected = np.corrcoef([0.5, 0.5, 2.0], [0.0, 1.0, 2.0])[0, 1]
    assert spearman([1.0, 1.0, 2.0], [0.0, 1.0, 2.0]) == pytest.approx(expected)


def event_tags(directory):
    tags = set()
    for path in glob.glob(str(directory / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags |= {v.tag for v in event.summary.value}
    return tags


def grouped_callback(tmp_path, n=300, num_samples=120, with_truth=True):
    x, y = linear_problem(n=n)
    model = compiled(HPL, make_regressor(target_mean=1.0, target_std=2.0))
    groups = np.random.default_rng(3).integers(0, 3, size=n)
    callback = HPLDiagnostics(
        str(tmp_path),
        x,
        lambda x, seed: (x, x + 0.1),
        unlabeled_y=y if with_truth else None,
        num_samples=num_samples,
        unlabeled_groups=groups,
        group_names=("zero", "one", "T-shirt/top"),
    )
    callback.set_model(model)
    # The groups of the sampled rows, found independently of the callback.
    rows = np.random.default_rng(0).permutation(n)[:num_samples]
    return callback, model, groups[rows]


def test_group_means_match_numpy(tmp_path):
    callback, model, sampled_groups = grouped_callback(tmp_path)
    stats = callback.compute(model)
    for g in range(3):
        in_group = sampled_groups == g
        assert in_group.any()
        np.testing.assert_allclose(
            stats["group_mean_sigma2"][g],
            stats["sigma2"][in_group].astype("float64").mean(),
            rtol=1e-12,
        )
        np.testing.assert_allclose(
            stats["group_mean_error"][g],
            stats["error"][in_group].astype("float64").mean(),
            rtol=1e-12,
        )


def test_empty_group_gives_nan_and_other_groups_are_exact():
    means = group_means([1.0, 2.0, 6.0], np.array([0, 2, 2]), 4)
    np.testing.assert_array_equal(np.isnan(means), [False, True, False, True])
    assert means[0] == 1.0 and means[2] == 4.0


def test_history_event_tags_and_json(tmp_path):
    callback, model, _ = grouped_callback(tmp_path)
    first = callback.compute(model)
    callback.on_epoch_end(0)
    callback.on_epoch_end(1)
    callback.on_train_end()
    history = callback.history
    assert history["epoch"] == [1, 2]
    assert set(history["group_mean_sigma2"]) == {"zero", "one", "T-shirt/top"}
    assert history["group_mean_sigma2"]["one"][0] == pytest.approx(
        first["group_mean_sigma2"][1]
    )
    assert history["spearman"][0] == pytest.approx(first["spearman"])
    assert history["mean_log_variance"][0] == pytest.approx(
        np.mean(np.log(first["sigma2"]))
    )
    with open(tmp_path / "history.json") as file:
        assert json.load(file) == history
    tags = event_tags(tmp_path)
    assert {
        "hpl/group_mean_sigma2/zero",
        "hpl/group_mean_sigma2/T-shirt_top",
        "hpl/group_mean_error/one",
        "hpl/sigma2_by_group",
    } <= tags


def test_groups_without_ground_truth_give_only_sigma2_means(tmp_path):
    callback, model, _ = grouped_callback(tmp_path, with_truth=False)
    stats = callback.compute(model)
    assert set(stats) == {"sigma2", "group_mean_sigma2"}
    callback.on_epoch_end(0)
    assert "group_mean_error" not in callback.history
    assert not any("error" in tag for tag in event_tags(tmp_path))


def test_group_names_default_to_ids_and_bad_groups_are_refused(tmp_path):
    x, _ = linear_problem(n=20)
    views = lambda x, seed: (x, x)  # noqa: E731
    groups = np.arange(20) % 4
    callback = HPLDiagnostics(str(tmp_path), x, views, unlabeled_groups=groups)
    assert callback.group_names == ("0", "1", "2", "3")
    with pytest.raises(ValueError, match="20 integer group ids"):
        HPLDiagnostics(str(tmp_path), x, views, unlabeled_groups=groups[:5])
    with pytest.raises(ValueError, match="only 2 group_names"):
        HPLDiagnostics(
            str(tmp_path), x, views, unlabeled_groups=groups, group_names=("a", "b")
        )
