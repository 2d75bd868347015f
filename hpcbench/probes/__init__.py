"""Probes: rank programs that measure one part of a system rather than train (the network's collectives, the
storage path). Importing this package registers every probe module in it.

Every probe has the same shape: a config checked up front, the flags that reproduce it, a rank program
(`python -m hpcbench.probes NAME`) that starts its collectives from the rank table, measures, gathers to rank 0
and writes one record, and the launcher its ranks start under. Launch code knows a probe only as a module name
and its arguments, so the same probe runs on local processes (`hpcbench netbench`) or as a cluster job
(`hpcbench netbench --profile ...`) without either side naming the other.
"""

from hpcbench.plugins import import_submodules
from hpcbench.probes.base import PROBES, RANK_PROGRAM, Probe, probe_main

import_submodules(__name__, __path__, skip=("base", "__main__"))

__all__ = ["PROBES", "RANK_PROGRAM", "Probe", "probe_main"]
