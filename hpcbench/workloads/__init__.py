"""Reference workloads. Importing this package registers every workload module in it."""

import importlib
import pkgutil

from hpcbench.workloads.base import DataContext, Workload, get_workload, registry

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["DataContext", "Workload", "get_workload", "registry"]
