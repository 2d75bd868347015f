"""Fault tests: an output folder that cannot take the records is refused before any training starts,
in one line with exit code 2, and nothing is written."""

import json
import subprocess

import pytest

from conftest import cli_in_process
from hpcbench.records import check_out_dir


def run_into(out: str) -> subprocess.CompletedProcess:
    return cli_in_process("run", "--workload", "mlp", "--nproc", "2", "--device", "cpu", "--out", out)


def assert_refused(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("hpcbench run: error: out: "), result.stderr
    assert message in result.stderr, result.stderr
    assert result.stdout == ""  # no worker ever printed


@pytest.mark.parametrize("make_path", [lambda tmp: tmp / "a-file" / "results", lambda tmp: "/proc/hpcbench-results"],
                         ids=["under-a-file", "read-only-filesystem"])
def test_unwritable_folder(tmp_path, make_path):
    (tmp_path / "a-file").write_text("not a folder")
    result = run_into(str(make_path(tmp_path)))
    assert_refused(result, "cannot write records to ")


def test_missing_folder_is_created(tmp_path):
    """Like `mkdir -p`: a new sweep folder is the normal case."""
    check_out_dir(str(tmp_path / "new" / "results"))
    assert (tmp_path / "new" / "results").is_dir()


@pytest.fixture
def tiny_filesystem(tmp_path):
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_no_free_space(tiny_filesystem):
    result = run_into(str(tiny_filesystem))
    assert_refused(result, "MiB free in ")
    assert list(tiny_filesystem.iterdir()) == []


def test_folder_of_another_schema_version(out_dir):
    (out_dir / "old.json").write_text(json.dumps({"schema_version": 1, "status": "ok"}, indent=1))
    (out_dir / "notes.json").write_text('{"not": "a record"}')  # other JSON files are no reason to refuse
    result = run_into(str(out_dir))
    assert_refused(result, "holds records of schema version 1 (old.json)")
    assert sorted(p.name for p in out_dir.iterdir()) == ["notes.json", "old.json"]
