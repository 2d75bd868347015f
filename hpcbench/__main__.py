"""`python -m hpcbench` is the `hpcbench` command."""

import sys

from hpcbench.cli import main

sys.exit(main())
