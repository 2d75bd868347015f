"""One registry shape for every axis (workloads, engines, schedulers, launchers, measurements).

A plug-in is one module in its package that decorates its class with the package registry's
`register`; importing the package imports every module in it, so adding a plug-in is adding a file.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from hpcbench.errors import ConfigError

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Classes by their `name`, listed in `order` (then name) wherever users see the choices."""

    def __init__(self, kind: str, field_name: str) -> None:
        self.kind = kind
        self.field_name = field_name
        """The config field or flag that names a plug-in of this kind, for error messages."""
        self._classes: dict[str, T] = {}

    def register(self, cls: T) -> T:
        if cls.name in self._classes:
            raise RuntimeError(f"{self.kind} {cls.name!r} registered twice")
        self._classes[cls.name] = cls
        return cls

    def classes(self) -> dict[str, T]:
        ordered = sorted(self._classes.values(), key=lambda c: (getattr(c, "order", 100), c.name))
        return {cls.name: cls for cls in ordered}

    def names(self) -> tuple[str, ...]:
        return tuple(self.classes())

    def get(self, name: str) -> T:
        """The class registered as `name`; a ConfigError listing the valid names otherwise."""
        try:
            return self._classes[name]
        except (KeyError, TypeError):
            raise ConfigError(self.field_name, f"{name!r} is not one of: {', '.join(self.names())}") from None

    def find(self, accepts: Callable[[T], bool]) -> T | None:
        """The first class (in listing order) that accepts, or None."""
        return next((cls for cls in self.classes().values() if accepts(cls)), None)


def import_submodules(package_name: str, package_path: Iterable[str], skip: tuple[str, ...] = ("base",)) -> None:
    """Import every module of a plug-in package, which registers what it defines."""
    for module in pkgutil.iter_modules(package_path):
        if module.name not in skip:
            importlib.import_module(f"{package_name}.{module.name}")


def resolve_options(options_cls: type, given: dict[str, Any], owner: str, flag_prefix: str = "") -> dict[str, Any]:
    """Validate the options a user gave against a plug-in's Options dataclass and fill its defaults.

    `owner` says whose options they are ("workload 'cnn'"); an unknown one is refused with the
    list of valid ones, by its flag name.
    """
    valid = {f.name for f in dataclasses.fields(options_cls)}
    unknown = sorted(set(given) - valid)
    if unknown:
        allowed = ", ".join(sorted(valid)) or "none"
        raise ConfigError(option_flag(unknown[0], flag_prefix), f"not an option of {owner} (its options: {allowed})")
    return dataclasses.asdict(options_cls(**given))


def option_flag(field_name: str, flag_prefix: str = "") -> str:
    """`image_size` -> `image-size`; with prefix `hvd`: `hvd-image-size` (no leading dashes)."""
    name = field_name.replace("_", "-")
    return f"{flag_prefix}-{name}" if flag_prefix else name
