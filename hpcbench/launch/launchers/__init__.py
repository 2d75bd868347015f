"""Launchers (srun, torchrun, mpirun). Importing the package registers every launcher module in it."""

from hpcbench.launch.launchers.base import LAUNCHERS, Launcher, Shape
from hpcbench.plugins import import_submodules

import_submodules(__name__, __path__)

__all__ = ["LAUNCHERS", "Launcher", "Shape"]
