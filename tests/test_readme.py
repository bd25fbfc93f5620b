"""The README's examples run (the library quickstart and the own-data CSV)."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _block_after(heading):
    text = (ROOT / "README.md").read_text()
    section = text.split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_library_example_runs():
    code = _block_after("## Library quickstart")
    code = code.replace("epochs=10", "epochs=1").replace(
        "steps_per_epoch=54", "steps_per_epoch=2"
    )
    assert "steps_per_epoch=2" in code
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["model"].optimizer.iterations.numpy() == 2


def test_readme_quickstart_commands_are_the_makefile_targets():
    text = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "make run" in text and "make test" in text
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_own_data_example_imputes_the_missing_targets(tmp_path):
    """The README's CSV example, as written but with 1 epoch of 3 steps."""
    import os
    import subprocess
    import sys

    import pandas as pd

    text = (ROOT / "README.md").read_text()
    section = text.split("## Your own data", 1)[1]
    script = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    short = script.replace("--epochs 10", "--epochs 1 --steps-per-epoch 3 --verbose 0")
    assert short != script
    short = short.replace(".venv/bin/python", sys.executable)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", short],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    table = pd.read_csv(tmp_path / "houses.csv")
    imputed = pd.read_csv(tmp_path / "imputed.csv")
    missing = table.index[table["MedHouseVal"].isna()]
    assert list(imputed["row"]) == list(missing)
    assert imputed["prediction"].notna().all()
    assert (tmp_path / "runs" / "houses" / "results.json").is_file()
