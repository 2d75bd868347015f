"""The read side: run records -> pandas DataFrame -> scaling tables, models, plots and reports.

Imports pandas and matplotlib only — never torch — so it runs on a laptop against copied result folders.
"""

from hpcbench.analysis.convergence import olympic_mean, tta_table
from hpcbench.analysis.load import load_records
from hpcbench.analysis.scaling import amdahl_fits, format_scaling_table, karp_flatt, scaling_table

__all__ = ["amdahl_fits", "format_scaling_table", "karp_flatt", "load_records", "olympic_mean", "scaling_table", "tta_table"]
