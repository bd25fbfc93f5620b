"""The README's library example runs (with a shortened fit)."""

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
