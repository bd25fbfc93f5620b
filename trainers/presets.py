"""Named sets of paper settings for `python -m trainers.run --preset NAME`.

A preset maps `"section.field"` (a `RunConfig` field) to a value; explicit
flags override it. A value that depends on the data's modality is a
`ByModality`. Every value's source is in docs/presets.md.
"""

import dataclasses

from datasets.registry import get_dataset


@dataclasses.dataclass(frozen=True)
class ByModality:
    """A preset value that depends on the data set's modality.

    Example:

    >>> ByModality(image=0.1, text=1.0).resolve("text")
    1.0
    """

    tabular: object = None
    image: object = None
    text: object = None

    def resolve(self, modality):
        return getattr(self, modality)


PRESETS = {}


def preset_values(name, explicit):
    """The values preset `name` sets (resolved for the run's data set).

    Args:
        name: a `PRESETS` name, or `None` (no values).
        explicit: the flags the user gave (`"section.field" -> value`), used
            for the data set, which decides `ByModality` values.
    """
    if name is None:
        return {}
    dataset = explicit.get("data.dataset", "california_housing")
    modality = get_dataset(dataset).modality if dataset else "tabular"
    values = {}
    for key, value in PRESETS[name].items():
        if isinstance(value, ByModality):
            value = value.resolve(modality)
        if value is not None:
            values[key] = value
    return values
