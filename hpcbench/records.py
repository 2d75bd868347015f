"""Run records: one versioned JSON file per run, written atomically, with provenance.

A record holds everything the analysis needs — the resolved config, raw per-rank step times,
the derived metrics, what was measured (`experiment`) and where (`system`) — so results can be
re-read without the code that made them. Readers must check `schema_version`; `load` reads
schema 1 too, deriving the two blocks it lacked from its config and provenance.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from hpcbench.errors import ConfigError
from hpcbench.experiment import experiment_block, system_block
from hpcbench.files import write_atomic as write_file_atomic

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
"""Schema 2 added `experiment` and `system`; schema 1 records are upgraded when read."""
STATUSES = ("ok", "failed", "interrupted")
KINDS = ("train", "netbench", "peak", "prediction", "iobench", "survey")
"""What a record holds: a training run, collective bandwidth, a device's achievable matmul rate (`hpcbench
peak`), storage read rates (`hpcbench iobench`), every node of an allocation probed (`hpcbench survey`) —
measurements — or a model's prediction (`hpcbench predict`), which no reader pools with them.
Records without `kind` are training runs."""

MIN_FREE_BYTES = 64 * 2**20
"""A record is kilobytes to a few megabytes (every step time of every rank); keep a margin."""

_SCHEMA_PATTERN = re.compile(rb'^\{\s*"schema_version":\s*(-?\d+)')


def new_run_id() -> str:
    """Sortable by start time and unique across nodes: UTC timestamp plus random hex."""
    return f"{utc_now().strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def record_path(out_dir: str, workload: str, engine: str, world_size: int, run_id: str) -> Path:
    return Path(out_dir) / f"{workload}_{engine}_{world_size}p_{run_id}.json"


def write_atomic(path: Path, record: dict[str, Any]) -> None:
    """Write a record as JSON, atomically: readers see all of it or none."""
    write_file_atomic(path, json.dumps(record, indent=1, allow_nan=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN: a non-finite loss is stored as null and the run marked failed."""
    return value if value is not None and math.isfinite(value) else None


def make_record(
    *,
    run_id: str,
    status: str,
    reason: str | None,
    config: dict[str, Any],
    workload: dict[str, Any] | None,
    metrics: dict[str, Any] | None,
    ranks: list[dict[str, Any]],
    provenance: dict[str, Any],
    kind: str = "train",
) -> dict[str, Any]:
    """A record of this schema; `experiment` and `system` are derived here, from the config and provenance."""
    assert status in STATUSES and kind in KINDS
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "run_id": run_id,
        "status": status,
        "reason": reason,
        "experiment": experiment_block(config) if kind == "train" else None,
        "system": system_block(provenance, config.get("system")),
        "config": config,
        "workload": workload,
        "metrics": metrics,
        "ranks": ranks,
        "provenance": provenance,
    }


SCHEMA_1_ENGINE_OPTIONS = {"hvd_compression": "compression", "hvd_fusion_threshold_mb": "fusion_threshold_mb",
                           "hvd_cycle_time_ms": "cycle_time_ms", "hvd_timeline": "timeline"}
"""Schema 1 kept the one engine's options that existed then as flat config fields."""


def upgrade(record: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 record as schema 2: the experiment and system derived from what it recorded.

    Schema 1 did not record cores, memory or GPUs per node, nor the installed Horovod of DDP runs
    (only the Horovod runs named it): those system fields stay null, alike for every schema-1 record.
    """
    config, provenance = record.get("config"), record.get("provenance")
    if record.get("schema_version") != 1 or not isinstance(config, dict) or not isinstance(provenance, dict):
        return record
    config = {k: v for k, v in config.items() if k not in SCHEMA_1_ENGINE_OPTIONS}
    config["engine_options"] = {new: record["config"][old] for old, new in SCHEMA_1_ENGINE_OPTIONS.items()
                                if old in record["config"] and config.get("engine") == "horovod"}
    provenance = {k: v for k, v in provenance.items() if k != "horovod"}
    kind = record.get("kind", "train")
    return {**record, "experiment": experiment_block(config) if kind == "train" else None,
            "system": system_block(provenance, config.get("system")), "upgraded_from_schema": 1}


def upgrade_window_statistic(record: dict[str, Any]) -> dict[str, Any]:
    """A training record written before every window had one statistic (timing.WINDOW_STATISTIC) took the
    compute-only step and exposed communication from medians: they are derived again from its raw per-step
    times, so that records of both ages pool. Its own metrics are the record's; this is how they are read."""
    metrics = record.get("metrics")
    if (not isinstance(metrics, dict) or metrics.get("compute_step_time_s") is None or "window_statistic" in metrics
            or not metrics.get("samples_per_s") or not metrics.get("global_batch_size")):
        return record
    ranks = record.get("ranks") or []
    compute = [r.get("compute_step_times_s") if isinstance(r, dict) else None for r in ranks]
    if not compute or not all(isinstance(c, list) and c for c in compute):
        return record
    from hpcbench.timing import compute_only_metrics  # numpy only: no torch on the read side

    step = metrics["global_batch_size"] / metrics["samples_per_s"]
    try:
        split = compute_only_metrics(step, compute)
    except (TypeError, ValueError):
        return record  # record_problem and the readers say what is wrong with it
    metrics = {**metrics, "step_time_s_mean": step, **split}
    terms = metrics.get("forecast_terms")
    if isinstance(terms, dict) and isinstance(terms.get("framework"), dict) and terms["framework"].get("step_s") is not None:
        framework = {**terms["framework"], "step_s": split["exposed_comm_s"], "synced_step_s": step,
                     "compute_only_step_s": split["compute_step_time_s"], "statistic": split["window_statistic"]}
        metrics["forecast_terms"] = {**terms, "framework": framework}
    return {**record, "metrics": metrics, "upgraded_window_statistic": "compute-only terms derived again as means"}


def check_out_dir(path: str) -> None:
    """Fail before any training if records could not be written or would not belong there.

    Creates the folder (and its parents) when missing, as `mkdir -p` would; refuses one that is
    not writable, lacks MIN_FREE_BYTES of free space, or holds records of another schema version.
    """
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".hpcbench-write-probe-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.unlink(probe)
        stats = os.statvfs(path)
    except OSError as exc:
        raise ConfigError("out", f"cannot write records to {path!r}: {exc.strerror or exc}") from None
    free = stats.f_bavail * stats.f_frsize
    if free < MIN_FREE_BYTES:
        raise ConfigError("out", f"only {free / 2**20:.1f} MiB free in {path!r}; need at least {MIN_FREE_BYTES // 2**20} MiB")
    for record_file in sorted(Path(path).glob("*.json")):
        version = peek_schema_version(record_file)
        if version is not None and version != SCHEMA_VERSION:
            raise ConfigError(
                "out", f"{path!r} holds records of schema version {version} ({record_file.name}); this hpcbench "
                f"writes version {SCHEMA_VERSION}: use another folder"
            )


def check_out_dir_on_every_rank(path: str, rank: int, all_gather_object: Callable[[Any], list[Any]]) -> None:
    """Rank 0, which alone writes, checks the folder (check_out_dir) before any work; every rank raises
    the same ConfigError, so none trains or measures a run whose record would be lost, whatever started it."""
    problem = None
    if rank == 0:
        try:
            check_out_dir(path)
        except ConfigError as exc:
            problem = (exc.field_name, exc.message)  # a tuple: ConfigError itself does not pickle
    agreed = all_gather_object(problem)[0]
    if agreed:
        raise ConfigError(*agreed)


def peek_schema_version(path: Path) -> int | None:
    """The schema version a record file declares in its first bytes (we write it first), or None."""
    try:
        with open(path, "rb") as handle:
            match = _SCHEMA_PATTERN.match(handle.read(64))
    except OSError:
        return None
    return int(match.group(1)) if match else None


MAX_RECORD_BYTES = 64 * 2**20
"""Far above any real record; a bigger file is not read into memory."""


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read one record; raises ValueError for anything that is not a valid record of a known schema.

    Hostile input (NaN or infinite numbers, binary data, huge files, missing or mistyped keys)
    raises too: a reader skips it with a warning rather than averaging it in.
    """
    size = os.stat(path).st_size
    if size > MAX_RECORD_BYTES:
        raise ValueError(f"{path}: {size} bytes, more than any record ({MAX_RECORD_BYTES} bytes at most)")
    with open(path, "rb") as handle:
        return parse(handle.read(), path)


def parse(data: bytes, path: str | os.PathLike) -> dict[str, Any]:
    """A record from a file's bytes (`load`, or a reader that hashes the same bytes); ValueError as `load`."""
    try:
        # orjson: 5x the stdlib's speed on reports over thousands of records. It rejects NaN and
        # Infinity, invalid UTF-8 and nesting deeper than 1024 with a JSONDecodeError (a ValueError).
        record = orjson.loads(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if not isinstance(record, dict) or "schema_version" not in record:
        raise ValueError(f"{path}: not an hpcbench record")
    if record["schema_version"] not in READABLE_SCHEMAS or isinstance(record["schema_version"], bool):
        raise ValueError(f"{path}: schema_version {record['schema_version']!r}, this hpcbench reads "
                         f"{', '.join(map(str, READABLE_SCHEMAS))}")
    record = upgrade_window_statistic(upgrade(record))
    problem = record_problem(record)
    if problem:
        raise ValueError(f"{path}: invalid record: {problem}")
    return record


def record_problem(record: dict[str, Any]) -> str | None:
    """What makes a record (schema 2, or 1 upgraded) unusable, or None. Readers rely on exactly these fields."""
    for key, kind in (("run_id", str), ("status", str), ("config", dict), ("provenance", dict)):
        if not isinstance(record.get(key), kind):
            return f"{key} missing or not a {kind.__name__}"
    if record["status"] not in STATUSES:
        return f"status {record['status']!r} is not one of {', '.join(STATUSES)}"
    kind = record.get("kind", "train")
    if kind not in KINDS:
        return f"kind {kind!r} is not one of {', '.join(KINDS)}"
    if record["status"] != "ok":
        return None
    if kind == "netbench":
        return _netbench_problem(record)
    if kind == "prediction":
        points = (record.get("metrics") or {}).get("points")
        return None if isinstance(points, list) and points else "a prediction record needs metrics.points"
    if kind == "iobench":
        rate = (record.get("metrics") or {}).get("aggregate_bytes_per_s")
        ok = isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 < rate < math.inf
        return None if ok else f"metrics.aggregate_bytes_per_s must be a positive finite number, got {rate!r}"
    if kind == "survey":
        metrics = record.get("metrics") or {}
        ok = isinstance(metrics.get("nodes"), list) and metrics["nodes"] and isinstance(metrics.get("ranks"), list)
        return None if ok else "a survey record needs metrics.nodes and metrics.ranks"
    if kind == "peak":
        rate = (record.get("metrics") or {}).get("achievable_tflops")
        ok = isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 < rate < math.inf
        return None if ok else f"metrics.achievable_tflops must be a positive finite number, got {rate!r}"
    config, metrics, prov = record["config"], record.get("metrics"), record["provenance"]
    for key in ("workload", "engine", "device"):
        if not isinstance(config.get(key), str):
            return f"config.{key} missing or not a string"
    if not _is_count(config.get("batch_size")) or not _is_count(prov.get("world_size")):
        return "config.batch_size and provenance.world_size must be positive integers"
    if not isinstance(metrics, dict):
        return "an ok record needs metrics"
    for block, key in (("experiment", "experiment_id"), ("system", "system_id")):
        if not isinstance(record.get(block), dict) or not isinstance(record[block].get(key), str):
            return f"{block}.{key} missing or not a string"
    rate = metrics.get("samples_per_s")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < math.inf:
        return f"metrics.samples_per_s must be a positive finite number, got {rate!r}"
    return None


def netbench_rows(metrics: dict[str, Any]) -> dict[str, Any]:
    """Rows per collective; records before the MPI issue held only all-reduce rows, as `allreduce`."""
    if "collectives" in metrics:
        return metrics["collectives"]
    return {"all_reduce": metrics["allreduce"]} if "allreduce" in metrics else {}


def _netbench_problem(record: dict[str, Any]) -> str | None:
    collectives = netbench_rows(record.get("metrics") or {})
    if not isinstance(collectives, dict) or not collectives or not _is_count(record["provenance"].get("world_size")):
        return "a netbench record needs metrics.collectives rows and provenance.world_size"
    for name, rows in collectives.items():
        if not isinstance(rows, list) or not rows:
            return f"metrics.collectives.{name} needs a list of rows"
        for row in rows:
            values = [row.get(k) if isinstance(row, dict) else None for k in ("size_bytes", "time_s", "algbw_gbps", "busbw_gbps")]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < math.inf for v in values):
                return f"metrics.collectives.{name} row {row!r} needs finite size_bytes, time_s, algbw_gbps, busbw_gbps"
    return None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
