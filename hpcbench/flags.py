"""Command-line flags <-> RunConfig, in both directions.

The flags come from RunConfig's field metadata and the plug-ins' Options dataclasses (workloads'
as `--<option>`, engines' as `--<prefix>-<option>`), so a new field, workload option or engine
option is a new flag without touching the CLI, and the local launcher can hand a resolved config
to its workers as the same flags a user would type.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
from typing import Any

from hpcbench.config import RunConfig, flag_fields
from hpcbench.engines import ENGINES
from hpcbench.errors import ConfigError
from hpcbench.modes import RUN_MODES
from hpcbench.plugins import option_flag
from hpcbench.workloads import registry

def _int_or_word(text: str) -> int | str:
    """A count or a word (`--repeats auto`); the config says which words it takes."""
    return int(text) if text.lstrip("-").isdigit() else text


_TYPES = {"int": int, "float": float, "str": str, "int | None": int, "str | None": str, "float | None": float,
          "int | str": _int_or_word}
ENGINE_DEST = "engine_option:"
"""argparse dest of an engine option: `engine_option:<engine>:<field>`."""


def _parse_type(annotation: Any) -> Any:
    name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    if name == "bool":
        return _parse_bool
    return _TYPES[name]


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not one of: true, false")


def workload_option_fields() -> dict[str, tuple[Any, str, list[str]]]:
    """Every workload option: name -> (type, help, workloads that have it)."""
    found: dict[str, tuple[Any, str, list[str]]] = {}
    for name, cls in sorted(registry().items()):
        for f in dataclasses.fields(cls.Options):
            doc = field_doc(cls.Options, f.name)
            if f.name in found:
                found[f.name][2].append(name)
            else:
                found[f.name] = (f.type, doc, [name])
    return found


def field_doc(options_cls: type, field_name: str) -> str:
    """The docstring line under a dataclass field (the house style documents fields that way)."""
    return _field_docs(options_cls).get(field_name, "")


@functools.cache
def _field_docs(options_cls: type) -> dict[str, str]:
    """Every field's docstring line, read from the source once per class (inspect.getsource is slow:
    re-reading it per field was half a second of every command's start-up)."""
    lines = inspect.getsource(options_cls).splitlines()
    docs = {}
    for line, after in zip(lines, lines[1:]):
        name = line.strip().split(":", 1)[0]
        if ":" in line and name.isidentifier() and after.strip().startswith('"""'):
            docs.setdefault(name, after.strip().strip('"'))
    return docs


def literal(text: str) -> str:
    """A help text as argparse prints it: it %-formats help strings, so a "95 %" written in a docstring would
    crash `--help` (it did, for --repeats)."""
    return text.replace("%", "%%")


def add_run_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    for f in flag_fields():
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.type in (bool, "bool"):  # --name / --no-name
            parser.add_argument(f.metadata["flag"], dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                help=literal(f"{f.metadata['help']} (default: {'on' if default else 'off'})"))
            continue
        registered = {"engine": ENGINES, "mode": RUN_MODES}.get(f.name)
        choices = f" ({', '.join(registered.names())})" if registered else ""
        parser.add_argument(
            f.metadata["flag"], dest=f.name, type=_parse_type(f.type), default=None,
            help=literal(f"{f.metadata['help']}{choices}" + (f" (default: {default})" if default is not None else "")),
        )
    group = parser.add_argument_group("workload options (each applies to the workloads named in brackets)")
    for name, (annotation, doc, workloads) in workload_option_fields().items():
        group.add_argument(
            "--" + option_flag(name), dest=f"option_{name}", type=_parse_type(annotation), default=None,
            help=literal(f"{doc} [{', '.join(workloads)}]"),
        )
    for engine_name, engine in ENGINES.classes().items():
        fields = dataclasses.fields(engine.Options)
        if not fields:
            continue
        group = parser.add_argument_group(f"engine options (with --engine {engine_name})")
        for f in fields:
            group.add_argument(
                "--" + option_flag(f.name, engine.flag_prefix), dest=f"{ENGINE_DEST}{engine_name}:{f.name}",
                type=_parse_type(f.type), default=None, help=literal(f"[{engine_name}] {field_doc(engine.Options, f.name)}"),
            )


def given_options(namespace: argparse.Namespace) -> dict[str, Any]:
    return {k.removeprefix("option_"): v for k, v in vars(namespace).items() if k.startswith("option_") and v is not None}


def given_engine_options(namespace: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Engine options the user typed, by engine name: {engine: {field: value}}."""
    found: dict[str, dict[str, Any]] = {}
    for dest, value in vars(namespace).items():
        if dest.startswith(ENGINE_DEST) and value is not None:
            engine_name, field_name = dest.removeprefix(ENGINE_DEST).split(":")
            found.setdefault(engine_name, {})[field_name] = value
    return found


def check_engine_options_apply(by_engine: dict[str, dict[str, Any]], engines: list[str]) -> None:
    """Options of an engine that will not run are a mistake, not something to ignore."""
    for engine_name in by_engine:
        if engine_name not in engines:
            prefix = ENGINES.get(engine_name).flag_prefix
            raise ConfigError("engine", f"the --{prefix}-* options apply to --engine {engine_name} only")


def given_run_values(namespace: argparse.Namespace) -> dict[str, Any]:
    """The RunConfig fields whose flags were given."""
    return {f.name: getattr(namespace, f.name) for f in flag_fields() if getattr(namespace, f.name, None) is not None}


def config_from_namespace(namespace: argparse.Namespace, **overrides: Any) -> RunConfig:
    """A RunConfig from parsed flags; flags not given keep RunConfig's defaults."""
    values = given_run_values(namespace)
    values.update(overrides)
    values.setdefault("options", given_options(namespace))
    if "engine_options" not in values:
        engine = values.get("engine", RunConfig.engine)
        by_engine = given_engine_options(namespace)
        check_engine_options_apply(by_engine, [engine])
        values["engine_options"] = by_engine.get(engine, {})
    return RunConfig(**values)


def config_to_args(cfg: RunConfig, skip: tuple[str, ...] = ()) -> list[str]:
    """The flags that reproduce `cfg` (the inverse of config_from_namespace)."""
    args: list[str] = []
    for f in flag_fields():
        value = getattr(cfg, f.name)
        if f.name in skip or value is None:
            continue
        if isinstance(value, bool):
            args.append(f.metadata["flag"] if value else "--no-" + f.metadata["flag"].removeprefix("--"))
        else:
            args += [f.metadata["flag"], str(value)]
    for name, value in cfg.options.items():
        if value is not None:
            args += ["--" + option_flag(name), str(value)]
    prefix = ENGINES.get(cfg.engine).flag_prefix
    for name, value in cfg.engine_options.items():
        if value is not None:
            args += ["--" + option_flag(name, prefix), str(value)]
    return args
