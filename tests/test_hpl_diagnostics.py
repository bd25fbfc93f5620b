import glob

import numpy as np
import pytest
import tensorflow as tf

from keras_ssr.callbacks.hpl_diagnostics import HPLDiagnostics, spearman
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
