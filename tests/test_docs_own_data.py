"""The "Your own data" example of docs/data.md runs (with a shortened fit)."""

import pathlib
import re
import warnings

import numpy as np
import pandas as pd

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _example():
    text = (ROOT / "docs" / "data.md").read_text()
    section = text.split("## Your own data", 1)[1].split("### In Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_own_data_example_trains_exports_and_imputes(tmp_path, monkeypatch):
    code = _example()
    code = code.replace("epochs=10", "epochs=1").replace(
        "steps_per_epoch=73", "steps_per_epoch=2"
    )
    assert "steps_per_epoch=2" in code
    monkeypatch.chdir(tmp_path)
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, "docs/data.md", "exec"), namespace)
    data, regressor = namespace["data"], namespace["regressor"]
    imputed = pd.read_csv(tmp_path / "imputed.csv")
    missing = np.flatnonzero(~data.has_target)
    assert len(imputed) == len(missing) == 18620  # the count the docs quote
    np.testing.assert_array_equal(imputed["row"], missing)
    np.testing.assert_allclose(
        imputed["prediction"],
        regressor.predict(data.x[missing], verbose=0).reshape(-1),
        rtol=1e-5,
        atol=1e-4,
    )
