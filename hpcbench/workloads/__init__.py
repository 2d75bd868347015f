"""Reference workloads. Importing this package registers every workload module in it."""

from hpcbench.plugins import import_submodules
from hpcbench.workloads.base import DataContext, Workload, get_workload, registry

import_submodules(__name__, __path__)

__all__ = ["DataContext", "Workload", "get_workload", "registry"]
