"""`python -m hpcbench` is the `hpcbench` command."""

from hpcbench.cli import program

program()
