"""`hpcbench index`: a SQLite catalogue of record files, for queries over years of runs; never the truth.

The JSON records stay the source of truth. Per record file the index keeps its path, size, mtime and
content hash; per record, the columns `history`, `compare` and `check` query (ids and labels, scale,
status, start time, VERSION_COLUMNS, headline metrics, samples/s per repeat). Delete it and
`hpcbench index` rebuilds it from the folders.

Incremental: a file whose size and mtime are unchanged is not opened; a changed one is hashed, and
re-read only when its bytes changed; a record already indexed (same run id and hash) under another
path, a copied folder, is not added twice; files gone from an indexed folder leave the index.

One writer at a time, and readers never see half an ingest, on the filesystems clusters share:
- The writer lock is a file created with O_CREAT | O_EXCL, atomic on local filesystems, NFSv3 and
  later, Lustre and GPFS. fcntl and flock locks need lockd on NFS (often off on compute nodes) or
  Lustre's `flock` mount option; SQLite's own locks are fcntl locks, and its WAL mode needs shared
  memory, which a network filesystem cannot give. The lock file names its host, process and time; a
  waiting writer breaks it when that process is gone (same host) or after STALE_LOCK_S (another host).
- The writer never changes the live file: it copies it, ingests into the copy in one transaction,
  fsyncs and renames the copy over it. A rename is atomic, so a reader opens the old index or the new
  one; readers open it read-only and immutable, taking no lock.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sqlite3
import time
import urllib.parse
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hpcbench import records
from hpcbench.analysis.load import VERSION_COLUMNS, frame_from_rows, load_records, run_row

DEFAULT_DB = Path("results") / "index.sqlite"
INDEX_VERSION = "1"
STALE_LOCK_S = 900.0
"""A lock from another host older than this is a crashed writer's: an ingest of 100,000 records takes ~1 min."""
SQLITE_MAGIC = b"SQLite format 3\x00"

RUN_COLUMNS = ["kind", "status", "started", "system_name", "system_id", "hardware_id", "experiment_id",
               "experiment_label", "work_id", "scaling", "workload", "engine", "device", "precision", "mode",
               "batch_size", "global_batch_size", "num_threads", "world_size", "num_nodes", "samples_per_s",
               "step_time_s_median", "tflops_per_device", "mfu", "peak_memory_gib", "energy_j_per_sample",
               "time_to_target_s", *VERSION_COLUMNS]
"""What a query needs without opening a record; the rest of a record stays in its file."""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
                                  sha256 TEXT NOT NULL, run_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS files_by_run ON files (run_id);
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, sha256 TEXT NOT NULL, path TEXT NOT NULL,
                                 {", ".join(RUN_COLUMNS)});
CREATE INDEX IF NOT EXISTS runs_by_point ON runs (hardware_id, experiment_id, num_nodes, world_size, started);
CREATE INDEX IF NOT EXISTS runs_by_system ON runs (system_name, world_size);
CREATE TABLE IF NOT EXISTS repeats (run_id TEXT NOT NULL, repeat INTEGER NOT NULL, samples_per_s REAL,
                                    PRIMARY KEY (run_id, repeat)) WITHOUT ROWID;
"""


class IndexBusy(RuntimeError):
    """Another writer held the lock for longer than we were willing to wait."""


@dataclass
class Ingest:
    """What one `hpcbench index` did."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    copies: int = 0
    skipped: int = 0

    def summary(self, db: Path) -> str:
        return (f"{db}: {self.added} added, {self.updated} re-read, {self.unchanged} unchanged, {self.copies} "
                f"copies of indexed runs, {self.removed} removed, {self.skipped} skipped (not valid records)")


def is_index(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


@contextmanager
def reading(db: Path) -> Iterator[sqlite3.Connection]:
    """A read-only, lock-free connection: the file it opens is never changed in place (see the module doc)."""
    uri = f"file:{urllib.parse.quote(str(Path(db).resolve()))}?mode=ro&immutable=1"
    connection = sqlite3.connect(uri, uri=True)
    try:
        yield connection
    finally:
        connection.close()


def indexed_files(db: Path) -> list[Path]:
    """Every record file the index lists: a report over the index reads the records themselves."""
    with reading(db) as connection:
        return [Path(path) for (path,) in connection.execute("SELECT path FROM files ORDER BY path")]


@dataclass(frozen=True)
class Selection:
    """Which runs a query wants: a system by name, experiments by id or a piece of their label, a process count."""

    system: str | None = None
    experiment: str | None = None
    world_size: int | None = None

    def sql(self) -> tuple[str, list]:
        clauses, parameters = [], []
        if self.system is not None:
            clauses.append("system_name = ?")
            parameters.append(self.system)
        if self.experiment is not None:
            clauses.append("(experiment_id = ? OR instr(experiment_label, ?) > 0)")
            parameters += [self.experiment, self.experiment]
        if self.world_size is not None:
            clauses.append("world_size = ?")
            parameters.append(self.world_size)
        return "".join(f" AND {clause}" for clause in clauses), parameters

    def frame(self, runs: pd.DataFrame) -> pd.DataFrame:
        keep = pd.Series(True, index=runs.index)
        if self.system is not None:
            keep &= runs["system_name"] == self.system
        if self.experiment is not None:
            keep &= (runs["experiment_id"] == self.experiment) | runs["experiment_label"].str.contains(
                self.experiment, regex=False, na=False)
        if self.world_size is not None:
            keep &= runs["world_size"] == self.world_size
        return runs[keep]


def index_runs(db: Path, *, include_failed: bool = False, repeats: bool = True,
               selection: Selection = Selection()) -> pd.DataFrame:
    """The training runs an index holds, as `load_records` gives them (columns it does not index are null)."""
    where, parameters = selection.sql()
    where = " WHERE kind = 'train'" + ("" if include_failed else " AND status = 'ok'") + where
    with reading(db) as connection:
        found = pd.read_sql_query(f"SELECT run_id, path, {', '.join(RUN_COLUMNS)} FROM runs{where}", connection,
                                  params=parameters)
        if repeats:  # a list per run, in plain Python: a pandas groupby into lists costs 4 s per 100,000 runs
            lists: dict[str, list[float]] = {}
            for run_id, rate in connection.execute(f"SELECT run_id, repeats.samples_per_s FROM repeats JOIN runs "
                                                   f"USING (run_id){where} ORDER BY run_id, repeat", parameters):
                lists.setdefault(run_id, []).append(rate)
            found["samples_per_s_repeats"] = found["run_id"].map(lists)
    return frame_from_rows(found.drop(columns="kind"))


def update_index(roots: Iterable[str | Path], db: Path = DEFAULT_DB, *, lock_timeout_s: float = 120.0) -> Ingest:
    """Add, re-read and drop records under `roots` (see the module doc); returns what changed."""
    roots = [Path(root).resolve() for root in roots]
    db = Path(db)
    db.parent.mkdir(parents=True, exist_ok=True)
    if db.exists() and not is_index(db):
        raise ValueError(f"{db} exists and is not an index (not an SQLite file); give another --db")
    with writer_lock(db, lock_timeout_s):
        fresh = not _current(db)  # none yet, or one an older hpcbench wrote: rebuilt from the records
        known = {} if fresh else _known_files(db, roots)
        on_disk = _scan(roots)
        done = Ingest()
        reads, stat_only, invalid = [], [], []
        for path, stat in on_disk.items():
            before = known.get(path)
            if before is not None and before[:2] == stat:
                done.unchanged += 1
                continue
            data = _read(path)
            digest = None if data is None else hashlib.sha256(data).hexdigest()
            if before is not None and digest is not None and before[2] == digest:
                stat_only.append((*stat, path))  # touched, not changed
                done.unchanged += 1
                continue
            try:
                if data is None:
                    raise ValueError("unreadable")
                record = records.parse(data, path)
            except ValueError as exc:
                if data is not None:
                    warnings.warn(f"skipping {path}: {exc}", stacklevel=2)
                done.skipped += 1
                invalid.append(path)  # a file that held a record and no longer does drops it
                continue
            reads.append((path, stat, digest, record))
        dropped = [path for path in known if path not in on_disk or path in invalid]
        if reads or stat_only or dropped or fresh:
            _write(db, reads, stat_only, dropped, done, fresh=fresh)
        done.removed = sum(1 for path in known if path not in on_disk)
        return done


def _current(db: Path) -> bool:
    """An index this hpcbench wrote (its INDEX_VERSION)."""
    if not db.exists():
        return False
    try:
        with reading(db) as connection:
            found = connection.execute("SELECT value FROM meta WHERE key = 'index_version'").fetchone()
    except sqlite3.DatabaseError:
        return False
    return found == (INDEX_VERSION,)


def _write(db: Path, reads: list, stat_only: list, removed: list[str], done: Ingest, *, fresh: bool) -> None:
    """Apply the ingest to a copy of the index in one transaction, then rename the copy over it."""
    copy = db.with_name(f".{db.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    try:
        if not fresh:
            shutil.copyfile(db, copy)
        connection = sqlite3.connect(copy, isolation_level=None)
        try:
            connection.executescript(SCHEMA)
            connection.execute("BEGIN")
            connection.execute("INSERT OR REPLACE INTO meta VALUES ('index_version', ?)", (INDEX_VERSION,))
            connection.executemany("UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?", stat_only)
            connection.executemany("DELETE FROM files WHERE path = ?", [(path,) for path in removed])
            for path, (size, mtime_ns), digest, record in reads:
                _put(connection, path, size, mtime_ns, digest, record, done)
            if removed or done.updated:  # whole-table passes: only when a file left or changed hands
                # runs whose every file is gone or now holds another run leave with their repeats
                connection.execute("DELETE FROM runs WHERE run_id NOT IN (SELECT run_id FROM files)")
                connection.execute("DELETE FROM repeats WHERE run_id NOT IN (SELECT run_id FROM runs)")
                connection.execute("UPDATE runs SET path = (SELECT min(path) FROM files WHERE files.run_id = runs.run_id) "
                                   "WHERE path NOT IN (SELECT path FROM files)")
            connection.execute("COMMIT")
        finally:
            connection.close()
        with open(copy, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(copy, db)
    finally:
        copy.unlink(missing_ok=True)


def _put(connection: sqlite3.Connection, path: str, size: int, mtime_ns: int, digest: str, record: dict,
         done: Ingest) -> None:
    run_id = record["run_id"]
    had_file = connection.execute("SELECT 1 FROM files WHERE path = ?", (path,)).fetchone() is not None
    connection.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)", (path, size, mtime_ns, digest, run_id))
    indexed = connection.execute("SELECT sha256 FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if indexed is not None and indexed[0] == digest:
        if not had_file:
            done.copies += 1
        return
    row = run_row(path, record)
    row["kind"] = record.get("kind", "train")
    values = [_sql_value(row.get(column)) for column in RUN_COLUMNS]
    connection.execute(f"INSERT OR REPLACE INTO runs VALUES (?, ?, ?, {', '.join('?' * len(RUN_COLUMNS))})",
                       (run_id, digest, path, *values))
    connection.execute("DELETE FROM repeats WHERE run_id = ?", (run_id,))
    rates = (record.get("metrics") or {}).get("samples_per_s_repeats") or []
    connection.executemany("INSERT INTO repeats VALUES (?, ?, ?)",
                           [(run_id, i, float(rate)) for i, rate in enumerate(rates) if _is_number(rate)])
    if had_file or indexed is not None:
        done.updated += 1
    else:
        done.added += 1


def _sql_value(value):
    """SQLite takes numbers and text; a list or a dict (a record's odd field) is stored as its text."""
    return value if value is None or isinstance(value, (int, float, str)) else str(value)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _known_files(db: Path, roots: list[Path]) -> dict[str, tuple[int, int, str]]:
    """path -> (size, mtime_ns, sha256) of the indexed files under `roots` (a range of the primary key each)."""
    found: dict[str, tuple[int, int, str]] = {}
    with reading(db) as connection:
        for root in roots:
            query = "SELECT path, size, mtime_ns, sha256 FROM files WHERE path = ? OR (path >= ? AND path < ?)"
            below = f"{root}{os.sep}"
            for path, size, mtime_ns, digest in connection.execute(query, (str(root), below, below[:-1] + chr(ord(os.sep) + 1))):
                found[path] = (size, mtime_ns, digest)
    return found


def _scan(roots: list[Path]) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of every *.json under `roots` (a root may be one file); temp files excluded."""
    found: dict[str, tuple[int, int]] = {}
    for root in roots:
        if root.is_file():
            stat = root.stat()
            found[str(root)] = (stat.st_size, stat.st_mtime_ns)
            continue
        folders = [str(root)]
        while folders:
            try:
                entries = list(os.scandir(folders.pop()))
            except OSError:  # removed while we walked
                continue
            for entry in entries:
                name = entry.name
                if name.endswith(".json") and not name.startswith("."):
                    try:
                        stat = entry.stat()
                    except OSError:
                        continue
                    found[entry.path] = (stat.st_size, stat.st_mtime_ns)
                elif entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
    return found


def _read(path: str) -> bytes | None:
    try:
        if os.stat(path).st_size > records.MAX_RECORD_BYTES:
            raise ValueError(f"more than {records.MAX_RECORD_BYTES} bytes, more than any record")
        with open(path, "rb") as handle:
            return handle.read()
    except (OSError, ValueError) as exc:
        warnings.warn(f"skipping {path}: {exc}", stacklevel=3)
        return None


@contextmanager
def writer_lock(db: Path, timeout_s: float) -> Iterator[None]:
    """Hold `<db>.lock` (O_CREAT | O_EXCL; see the module doc) while writing; wait up to `timeout_s` for it."""
    lock = db.with_name(db.name + ".lock")
    mine = f"{socket.gethostname()} {os.getpid()} {time.time():.3f}\n"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            held = _read_lock(lock)
            if held is not None and _stale(held):
                _break(lock, held)
                continue
            if time.monotonic() > deadline:
                raise IndexBusy(f"{lock} is held by {held.strip() if held else 'another writer'} (host pid time); "
                                f"waited {timeout_s:.0f} s") from None
            time.sleep(0.05)
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(mine)
        break
    try:
        yield
    finally:
        if _read_lock(lock) == mine:
            lock.unlink(missing_ok=True)


def _read_lock(lock: Path) -> str | None:
    try:
        return lock.read_text()
    except OSError:
        return None


def _stale(held: str) -> bool:
    """The holder's process is gone (this host), or the lock is older than STALE_LOCK_S (another host)."""
    try:
        host, pid, since = held.split()
        pid_number, since_s = int(pid), float(since)
    except ValueError:
        return False  # being written this instant
    if host == socket.gethostname():
        try:
            os.kill(pid_number, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    return time.time() - since_s > STALE_LOCK_S


def _break(lock: Path, held: str) -> None:
    """Remove a stale lock so that exactly one waiter does: rename it away first, and put back a lock that
    changed hands between our look and the rename."""
    aside = lock.with_name(f"{lock.name}.stale.{socket.gethostname()}.{os.getpid()}")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return
    if _read_lock(aside) != held:
        try:
            os.link(aside, lock)  # fails if a new lock exists: then that one stands
        except FileExistsError:
            pass
    else:
        warnings.warn(f"broke a stale index lock: {held.strip()} (host pid time)", stacklevel=3)
    aside.unlink(missing_ok=True)


def load_runs(paths: Iterable[str | Path], *, include_failed: bool = False, repeats: bool = True,
              selection: Selection = Selection()) -> pd.DataFrame:
    """Training runs from files, folders and indexes; an index is queried (in SQL, selection included), not
    its records read."""
    paths = [Path(path) for path in paths]
    frames = [index_runs(path, include_failed=include_failed, repeats=repeats, selection=selection)
              for path in paths if is_index(path)]
    others = [path for path in paths if not is_index(path)]
    if others or not frames:
        frames.append(selection.frame(load_records(others, include_failed=include_failed)))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
