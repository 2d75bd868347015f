"""`python -m hpcbench.install_horovod`: the short, documented name of the Horovod engine's installer."""

import sys

from hpcbench.engines.horovod_install import main

if __name__ == "__main__":
    sys.exit(main())
