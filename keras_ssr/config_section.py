"""`ConfigSection` and `option`: settings as dataclasses that carry their own CLI.

A config section is a dataclass of related settings (a method's constructor
arguments, the data flags, ...). Each field is declared with `option`, whose
metadata (help text, flag name, choices, source of the default) is enough for a
command line to be generated from the section, so the flags and the settings
can never drift apart. Values are validated where they are used (the method's
constructor, the trainer's section), not in the section.
"""

import dataclasses
from typing import ClassVar


def option(
    default,
    help,
    *,
    flag=None,
    aliases=(),
    choices=None,
    parse=None,
    source=None,
    cli=True,
):
    """A dataclass field with the metadata a CLI needs.

    Args:
        default: the default value.
        help: one line for `--help`.
        flag: the flag name when it differs from `--<field-name-with-dashes>`.
        aliases: further accepted flag names.
        choices: the valid values, if a closed set.
        parse: a function `str -> value` for values that are not a plain
            int/float/str/bool (e.g. a comma-separated tuple).
        source: where the default comes from (paper section, reference code,
            or a measurement), for the docs.
        cli: False for settings that have no flag.

    Example:

    >>> import dataclasses
    >>> @dataclasses.dataclass
    ... class Demo(ConfigSection):
    ...     name = "demo"
    ...     rate: float = option(0.1, "a rate")
    >>> Demo().to_kwargs()
    {'rate': 0.1}
    """
    metadata = {
        "help": help,
        "flag": flag,
        "aliases": tuple(aliases),
        "choices": None if choices is None else tuple(choices),
        "parse": parse,
        "source": source,
        "cli": cli,
    }
    return dataclasses.field(default=default, metadata=metadata)


class ConfigSection:
    """Base of a settings dataclass: a named section of a run's configuration.

    Subclasses are dataclasses with `option` fields and a class attribute
    `name` (the section's key in a nested configuration, e.g. `"hpl"`) and
    optionally `title` (the CLI flag group's title).
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""

    def to_kwargs(self, total_steps=None):
        """The section as keyword arguments (for a method's constructor).

        Args:
            total_steps: training steps of the run, for sections that turn a
                fraction of training into a step count (see `SSLConfig`).
        """
        return dataclasses.asdict(self)


def parse_floats(text):
    """`"a,b"` -> `(a, b)` as floats (a comma-separated flag value)."""
    try:
        return tuple(float(v) for v in str(text).split(","))
    except ValueError:
        raise ValueError(f"{text!r}: use comma-separated numbers") from None


def parse_ints(text):
    """`"a,b"` -> `(a, b)` as ints (a comma-separated flag value)."""
    try:
        return tuple(int(v) for v in str(text).split(","))
    except ValueError:
        raise ValueError(f"{text!r}: use comma-separated integers") from None
