"""Puts the test suite's path guard (tests/pathguard.py) into every Python process the tests start.

The suite prepends this folder to PYTHONPATH; Python imports `sitecustomize` at start-up. Outside the
suite (no HPCBENCH_PATH_GUARD_LOG in the environment) it does nothing.
"""

import os

if os.environ.get("HPCBENCH_PATH_GUARD_LOG"):
    import importlib.util
    import sys

    _spec = importlib.util.spec_from_file_location("pathguard", os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "pathguard.py"))
    _guard = importlib.util.module_from_spec(_spec)
    sys.modules["pathguard"] = _guard
    _spec.loader.exec_module(_guard)
    _guard.install()
