"""The command line of `python -m trainers.run`, generated from the config.

Every flag is a field of a config section (`trainers.config.all_sections`):
its name, type, choices and help come from the field's `option` metadata, so
the flags and `RunConfig` cannot drift apart. Only the flags a user gives are
applied over the defaults (and a `--preset`'s values); each section validates
its values when built, and every method asked for is constructed once with the
resulting arguments, so a bad value of any kind exits with a usage error
(status 2) before any data is read.
"""

import argparse
import dataclasses
import math
import types

from keras_ssr.methods.registry import get_method, method_names
from trainers.config import RunConfig, all_sections
from trainers.presets import PRESETS, modality_defaults, preset_values

_DESCRIPTION = """Train, compare, report and export keras-ssr methods.

With no arguments it runs the embedded default job (California Housing, 5 %
labels, seed 0, Supervised vs PseudoLabel vs MeanTeacher)."""


def build_parser():
    """The `argparse.ArgumentParser` of every section's flags."""
    parser = argparse.ArgumentParser(
        prog="python -m trainers.run", description=_DESCRIPTION
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="apply a named set of paper settings (see docs/presets.md); "
        "explicit flags override its values",
    )
    for section in all_sections():
        add_section_flags(parser, section)
    return parser


def add_section_flags(parser, section):
    """Adds one flag per CLI field of `section` to a group of `parser`."""
    group = parser.add_argument_group(section.title or section.name)
    for field in dataclasses.fields(section):
        meta = field.metadata
        if not meta.get("cli", True):
            continue
        flag = meta["flag"] or "--" + field.name.replace("_", "-")
        kwargs = {
            "dest": f"{section.name}.{field.name}",
            "default": argparse.SUPPRESS,
            "help": _help(field),
        }
        if _base_type(field) is bool:  # --flag / --no-flag
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _value_parser(field, flag)
            kwargs["metavar"] = field.name.upper()
            if meta["choices"] is not None:
                kwargs["choices"] = meta["choices"]
        group.add_argument(flag, *meta["aliases"], **kwargs)


def parse_args(argv=None):
    """Parses CLI flags into a `RunConfig`; bad values exit with status 2."""
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    preset = args.pop("preset", None)
    try:
        config = make_config(args, preset)
        check_methods(config, explicit=args)
    except ValueError as error:
        parser.error(str(error))
    return config


def make_config(explicit, preset=None):
    """A `RunConfig` from defaults, the data's modality defaults, a preset's
    values and explicit flags (later ones win).

    Args:
        explicit: `{"section.field": value}` of the flags the user gave.
        preset: a `PRESETS` name or `None`.

    Returns:
        The `RunConfig`, with `preset`: its name, the modality defaults
        applied, the values it set and `overrides` (explicit values that
        replaced a preset value).
    """
    applied = preset_values(preset, explicit)
    defaults = modality_defaults(explicit)
    values = {**defaults, **_shared(applied), **explicit}
    sections = {}
    for section in all_sections():
        prefix = section.name + "."
        fields = {
            k[len(prefix) :]: v for k, v in values.items() if k.startswith(prefix)
        }
        sections[section.name] = section(**fields)
    return RunConfig(
        **{name: sections[name] for name in _TRAINER},
        methods={name: s for name, s in sections.items() if name not in _TRAINER},
        method_overrides=_per_method(applied, explicit),
        preset={
            "name": preset,
            "modality_defaults": defaults,
            "values": applied,
            "overrides": {
                k: v
                for k, v in explicit.items()
                if k in applied or any(p.endswith(":" + k) for p in applied)
            },
        },
    )


def _shared(values):
    return {k: v for k, v in values.items() if ":" not in k}


def _per_method(values, explicit):
    """`{method: {"section.field": value}}` of the `method:` preset keys that
    no explicit flag overrides."""
    overrides = {}
    for key, value in values.items():
        if ":" in key:
            method, field = key.split(":", 1)
            if field not in explicit:
                overrides.setdefault(method, {})[field] = value
    return overrides


_TRAINER = tuple(
    f.name
    for f in dataclasses.fields(RunConfig)
    if f.name not in ("methods", "method_overrides", "preset")
)


def check_methods(config, explicit=()):
    """Constructs each method of the run once with its arguments, so that
    their constructors' `ValueError`s surface before any data is read.

    Methods not in the run are checked too when a flag of theirs was given
    (`explicit` names the given `section.field`s): a bad value is refused
    even if no method of this run reads it.
    """
    given = {key.split(".")[0] for key in explicit}
    names = list(config.training.methods) + [
        name
        for name in method_names()
        if given & {s.name for s in get_method(name).cls.config_sections}
    ]
    placeholder = _placeholder_regressor()
    for name in dict.fromkeys(names):
        entry = get_method(name)
        entry(placeholder, **entry.kwargs(config.method_sections(name), total_steps=1))


def _placeholder_regressor():
    import keras

    from keras_ssr.models.ssr_regressor import SSRRegressor

    return SSRRegressor(keras.layers.Identity())


def _help(field):
    meta = field.metadata
    text = meta["help"]
    default = field.default
    if isinstance(default, tuple):
        default = ",".join(map(str, default))
    if default is not None and default is not False:
        text += f" (default: {default})"
    if meta["source"]:
        text += f" [source: {meta['source']}]"
    return text.replace("%", "%%")


def _base_type(field):
    kind = field.type
    if isinstance(kind, types.UnionType):
        kind = next(t for t in kind.__args__ if t is not type(None))
    return kind


def _value_parser(field, flag):
    meta = field.metadata
    parse = meta["parse"] or {int: int, float: finite_float}.get(_base_type(field), str)

    def parser(text):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None

    parser.__name__ = flag  # argparse names the flag's type in its message
    return parser


def flag_table():
    """The Markdown reference of every flag, by section (docs/trainer.md)."""
    lines = []
    for section in all_sections():
        lines += [f"**{section.title or section.name}**", ""]
        lines += ["| flag | default | meaning |", "|---|---|---|"]
        for field in dataclasses.fields(section):
            meta = field.metadata
            if not meta.get("cli", True):
                continue
            flag = meta["flag"] or "--" + field.name.replace("_", "-")
            flags = [flag]
            if _base_type(field) is bool:
                flags.append("--no-" + flag[2:])
            names = ", ".join(f"`{f}`" for f in flags + list(meta["aliases"]))
            meaning = meta["help"].replace("|", "/")
            if meta["choices"]:
                meaning += f"; one of {', '.join(map(str, meta['choices']))}"
            if meta["source"]:
                meaning += f" (source: {meta['source']})"
            lines.append(f"| {names} | {_default_text(field)} | {meaning} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _default_text(field):
    default = field.default
    if isinstance(default, tuple):
        default = ",".join(map(str, default))
    if default is None:
        return "none"
    if default is False:
        return "off"
    return f"`{default}`"


def write_flag_docs(path="docs/trainer.md"):
    """Rewrites the flag reference between the markers of `path`."""
    import pathlib

    text = pathlib.Path(path).read_text()
    head, rest = text.split(FLAGS_START, 1)
    _, tail = rest.split(FLAGS_END, 1)
    pathlib.Path(path).write_text(
        head + FLAGS_START + "\n" + flag_table() + FLAGS_END + tail
    )


FLAGS_START = "<!-- flags: generated by `python -m trainers.cli` -->"
FLAGS_END = "<!-- flags: end -->"


def finite_float(text):
    """A float flag value; NaN and infinities are refused for every flag."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


if __name__ == "__main__":
    write_flag_docs()
