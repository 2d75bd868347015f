"""The path guard (tests/pathguard.py) fails a test that touches machine state, and nothing else."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_a_test_written_to_leak_fails_naming_the_path_and_the_line(tmp_path):
    """A pytest run inside this one, with the suite's conftest: its own TMPDIR is fresh, so the folder above it (this
    run's TMPDIR) is machine state to it. Reading a file there fails the test at teardown, in-process and from a
    subprocess; removing a tree that holds a folder named results does not (relative to the tree, not the checkout)."""
    (Path(os.environ["TMPDIR"]) / "left-by-someone.txt").write_text("machine state")
    (tmp_path / "test_leaks.py").write_text(textwrap.dedent('''
        import os, shutil, subprocess, sys
        from pathlib import Path

        LEFT = Path(os.environ["TMPDIR"]).parent / "left-by-someone.txt"

        def test_reads_it():
            assert LEFT.read_text() == "machine state"

        def test_reads_it_in_a_subprocess(tmp_path):
            script = Path(__file__).with_name("reader.py")
            script.write_text(f"open({str(LEFT)!r}).read()")
            subprocess.run([sys.executable, str(script)], check=True)

        def test_clean(tmp_path):
            (tmp_path / "tree" / "results").mkdir(parents=True)
            shutil.rmtree(tmp_path / "tree")
    '''))
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:randomly", "-p", "no:cacheprovider",
                             "-n", "0", "-q", "--rootdir", str(tmp_path), str(tmp_path / "test_leaks.py")],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ["PYTHONPATH"]])})
    assert result.returncode == 1, result.stdout[-3000:]
    assert "ERROR test_leaks.py::test_reads_it - Failed: touched" in result.stdout
    assert "ERROR test_leaks.py::test_reads_it_in_a_subprocess - Failed: touched" in result.stdout
    assert "left-by-someone.txt (pid" in result.stdout and "test_leaks.py:8" in result.stdout and "reader.py:1" in result.stdout
    assert "3 passed, 2 errors" in result.stdout
