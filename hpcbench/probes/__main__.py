"""A probe's rank program, as launch code starts it on every rank: `python -m hpcbench.probes NAME ARGS`."""

import sys

from hpcbench.probes import probe_main

probe_main(sys.argv[1:])
