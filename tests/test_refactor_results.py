"""Short deterministic runs give the records they gave before the refactors.

`tests/data/results_before_refactor.json` holds the per-(method, seed)
records of two short `--deterministic` runs made before the method-contract
refactor, covering every registered method family and their options (separate
head optimizer, Adam unroll, meta period, lambda2, mean-teacher imputer,
hold-out split, closed-form lambda). Re-running the same flags must give the
same validation and test metrics, up to the float32 rounding of the fused
Adam kernel the trainer's optimizer uses since (`FusedAdam`: updates differ
from Keras' Adam by ~1e-5 of their size, metrics after 8 steps by < 1e-5).
"""

import json
import pathlib

import pytest

from trainers.run import main

DATA = pathlib.Path(__file__).parent / "data" / "results_before_refactor.json"
RUNS = json.loads(DATA.read_text())["runs"]


@pytest.mark.parametrize("index", range(len(RUNS)))
def test_records_match_the_pre_refactor_run(index, tmp_path):
    before = RUNS[index]
    argv = before["args"] + [
        f"--output-dir={tmp_path}/runs",
        f"--export-dir={tmp_path}/sm",
        "--run-name=r",
    ]
    assert main(argv) == 0
    results = json.loads((tmp_path / "runs" / "r" / "results.json").read_text())
    after = {r["method"]: r for r in results["records"]}
    assert list(after) == [r["method"] for r in before["records"]]
    for record in before["records"]:
        now = after[record["method"]]
        for key, value in record.items():
            if isinstance(value, float):
                assert now[key] == pytest.approx(value, rel=1e-4, abs=1e-5), (
                    record["method"],
                    key,
                )
            else:
                assert now[key] == value, (record["method"], key)
