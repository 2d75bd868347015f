"""The read side: run records -> pandas DataFrame -> scaling tables (and, later, plots and reports).

Imports pandas only — never torch — so it runs on a laptop against copied result folders.
"""

from hpcbench.analysis.load import load_records
from hpcbench.analysis.scaling import format_scaling_table, scaling_table

__all__ = ["format_scaling_table", "load_records", "scaling_table"]
