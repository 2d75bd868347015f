"""The SQLite index: incremental and idempotent, never the truth, one writer at a time, readers never see half."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

from conftest import cli_in_process
from history_records import write_series
from hpcbench.analysis import load_records
from hpcbench.analysis.index import index_runs, indexed_files, update_index, writer_lock
from hpcbench.analysis.report import build_report

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference"


@pytest.fixture
def runs(tmp_path) -> Path:
    """Schema-1 records (the first reference runs) and schema-2 records (the GPT engines) in one folder."""
    folder = tmp_path / "runs"
    shutil.copytree(REFERENCE / "cpu-2core-vm", folder / "schema1")
    shutil.copytree(REFERENCE / "cpu-2core-vm-gpt-engines", folder / "schema2")
    return folder


def test_indexing_twice_changes_nothing_and_holds_what_the_folders_hold(runs, tmp_path):
    db = tmp_path / "index.sqlite"
    first = update_index([runs], db)
    assert (first.added, first.unchanged, first.skipped) == (18, 0, 0)
    inode = db.stat().st_ino
    again = update_index([runs], db)
    assert (again.added, again.updated, again.unchanged, again.removed) == (0, 0, 18, 0)
    assert db.stat().st_ino == inode  # nothing changed, nothing rewritten
    from_index, from_folders = index_runs(db), load_records([runs])
    assert {1, 2} == {json.loads(Path(p).read_text())["schema_version"] for p in from_index["path"]}
    columns = ["run_id", "system_id", "hardware_id", "experiment_id", "world_size", "samples_per_s", "torch", "git_sha"]
    pd.testing.assert_frame_equal(from_index.sort_values("run_id")[columns].reset_index(drop=True),
                                  from_folders.sort_values("run_id")[columns].reset_index(drop=True))
    repeats = dict(zip(from_folders["run_id"], from_folders["samples_per_s_repeats"]))
    assert all(row.samples_per_s_repeats == repeats[row.run_id] for row in from_index.itertuples())


def test_a_changed_file_is_re_read_a_touched_one_is_not_and_a_removed_one_leaves(runs, tmp_path):
    db = tmp_path / "index.sqlite"
    update_index([runs], db)
    changed = next((runs / "schema2").glob("gpt_ddp_2p_*.json"))
    record = json.loads(changed.read_text())
    record["metrics"]["samples_per_s"] = 1.5
    changed.write_text(json.dumps(record))
    touched = next((runs / "schema2").glob("gpt_ddp_1p_*.json"))
    os.utime(touched, ns=(1, 1))
    removed = next((runs / "schema1").glob("mlp_ddp_1p_*.json"))
    removed_id = json.loads(removed.read_text())["run_id"]
    removed.unlink()
    done = update_index([runs], db)
    assert (done.added, done.updated, done.unchanged, done.removed) == (0, 1, 16, 1)
    found = index_runs(db).set_index("run_id")
    assert found.loc[record["run_id"], "samples_per_s"] == 1.5 and removed_id not in found.index
    assert str(removed.resolve()) not in map(str, indexed_files(db))


def test_a_corrupt_file_is_skipped_with_a_warning_and_a_copy_is_not_indexed_twice(runs, tmp_path):
    (runs / "truncated.json").write_text('{"schema_version": 2, "sta')
    shutil.copytree(runs / "schema2", tmp_path / "copy")
    db = tmp_path / "index.sqlite"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        done = update_index([runs, tmp_path / "copy"], db)
    assert [str(w.message).split(":")[0] for w in caught] == [f"skipping {(runs / 'truncated.json').resolve()}"]
    assert (done.added, done.copies, done.skipped) == (18, 6, 1)
    assert len(index_runs(db)) == 18 and len(indexed_files(db)) == 24  # a report reads what the folders hold


def test_two_writers_at_once_leave_a_consistent_index(tmp_path):
    """Two `hpcbench index` processes on overlapping folders at the same moment: one waits for the other's lock."""
    write_series(tmp_path / "a", [1000.0] * 150, ["2.13.0"] * 150, prefix="a")
    write_series(tmp_path / "b", [900.0] * 150, ["2.13.0"] * 150, prefix="b")
    db = tmp_path / "index.sqlite"
    writers = [subprocess.Popen([sys.executable, "-m", "hpcbench", "index", str(tmp_path / folder), str(tmp_path / "a"),
                                 "--db", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for folder in ("a", "b")]
    outputs = [writer.communicate(timeout=120) for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], outputs
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert connection.execute("SELECT count(*) FROM runs").fetchone() == (300,)
        assert connection.execute("SELECT count(*) FROM repeats").fetchone() == (900,)
    assert not list(tmp_path.glob(".index.sqlite.*")) and not (tmp_path / "index.sqlite.lock").exists()


def test_a_dead_writers_lock_is_broken_and_a_live_one_waited_for(tmp_path):
    db = tmp_path / "index.sqlite"
    lock = tmp_path / "index.sqlite.lock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(f"{socket.gethostname()} {dead.stdout.strip()} 0\n")
    with pytest.warns(UserWarning, match="broke a stale index lock"), writer_lock(db, timeout_s=5):
        assert lock.read_text().split()[1] == str(os.getpid())
    assert not lock.exists()
    lock.write_text(f"{socket.gethostname()} {os.getpid()} 0\n")  # alive: this process
    busy = cli_in_process("index", str(tmp_path), "--db", str(db), "--lock-timeout", "0.2")
    assert busy.returncode == 1 and "is held by" in busy.stderr


def test_the_live_index_is_never_changed_in_place(runs, tmp_path):
    """A reader that opened the index before an ingest reads the old, whole index; the next reader the new one."""
    db = tmp_path / "index.sqlite"
    update_index([runs / "schema1"], db)
    reader = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)
    inode = db.stat().st_ino
    update_index([runs], db)
    assert db.stat().st_ino != inode  # renamed over, not written into
    assert reader.execute("SELECT count(*) FROM runs").fetchone() == (12,)
    assert len(index_runs(db)) == 18


def test_a_report_from_the_index_equals_the_report_from_the_folders(runs, tmp_path):
    db = tmp_path / "index.sqlite"
    update_index([runs / "schema2"], db)
    from_folder = build_report([runs / "schema2"], tmp_path / "folder")
    from_index = build_report([db], tmp_path / "index")
    assert from_index["csv"].read_text() == from_folder["csv"].read_text()
    assert from_index["markdown"].read_text().replace(str(tmp_path / "index"), "") == \
        from_folder["markdown"].read_text().replace(str(tmp_path / "folder"), "")


def test_a_db_that_is_not_an_index_is_refused_and_left_alone(runs, tmp_path):
    not_an_index = tmp_path / "notes.txt"
    not_an_index.write_text("my notes")
    result = cli_in_process("index", str(runs), "--db", str(not_an_index))
    assert result.returncode == 2 and "db: " in result.stderr and "is not an index" in result.stderr
    assert not_an_index.read_text() == "my notes"
