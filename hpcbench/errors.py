"""Bad input, said once: the error every layer raises and the checks that build its messages.

Below every other module, so that config, workloads, engines and launchers can all raise it
without importing each other.
"""

from __future__ import annotations

import math
from typing import Any


class ConfigError(ValueError):
    """Bad input. Names the field and what is allowed; the CLI prints it on one line and exits 2."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field_name = field_name
        self.message = message


def check_choice(name: str, value: Any, allowed: tuple[Any, ...] | list[Any]) -> None:
    """Raise a ConfigError naming the field and listing the allowed values."""
    if value not in allowed:
        raise ConfigError(name, f"{value!r} is not one of: {', '.join(map(str, allowed))}")


def check_bool(name: str, value: Any) -> None:
    """A switch is True or False: a sweep file's "yes" or 1 is refused, not read as true."""
    if not isinstance(value, bool):
        raise ConfigError(name, f"must be true or false, got {value!r}")


def check_at_least(name: str, value: int, minimum: int, why: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        suffix = f" ({why})" if why else ""
        raise ConfigError(name, f"must be an integer >= {minimum}{suffix}, got {value!r}")


def is_number(value: Any) -> bool:
    """A finite int or float (bool is an int to Python, never to a user)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_in_range(name: str, value: Any, low: float, high: float, unit: str = "") -> None:
    """A number in (low, high]; NaN and infinity are refused (a timeout of inf never fires)."""
    if not is_number(value) or not low < value <= high:
        what = f"a number of {unit} in" if unit else "a number in"
        raise ConfigError(name, f"must be {what} ({low:g}, {high:g}], got {value!r}")
