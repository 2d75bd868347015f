"""What was measured and where: the experiment and the system of a run, and their stable ids.

Runs may be pooled into one statistic only when both ids agree. The experiment is every field
that changes the work done per sample (and nothing that is the scale: processes and nodes are
where a run sits on a curve, not what it is). The system is the hardware and software a run ran
on. Both are derived from a record's config and provenance by pure functions, so writers and
readers (of older schemas too) compute the same ids.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

WORK_FIELDS = ("workload", "options", "data", "num_data_workers", "num_threads", "device", "engine", "engine_options")
"""Config fields that change the work per sample or how it is done. The scale-fixed batch joins by mode."""
STEP_FIELDS = {"precision": "fp32", "channels_last": False, "compile": False, "mode": "throughput", "target": None,
               "eval_every": None, "lr_scaling": "none", "lr_warmup_steps": 0, "data_format": None,
               "prefetch_factor": None, "pin_memory": False}
"""How a step computes and what a run measures (added later): part of the experiment when not at the default
every older record ran. A time-to-accuracy run's seed and budget are not: seeds pool, a budget only cuts a run."""
NAMED_BY_VALUE = ("precision", "mode")
"""Step fields a label shows by value alone (`bf16`, `tta`); booleans show their name, the rest name=value."""
HARDWARE_FIELDS = ("cpu_model", "cores_per_node", "memory_gib_per_node", "gpu_model", "gpus_per_node", "network")
"""network: the interconnect as the site names it (a profile's `network`, HPCBENCH_NETWORK in the job's
environment: "4x HDR200 InfiniBand", "emulated:tbf:1gbit"); null where nobody said, and then left out of
the id, so records written before it existed keep theirs."""
SOFTWARE_FIELDS = ("torch", "cuda", "nccl", "engine_libraries")
"""engine_libraries: the installed version of each engine's own library ({name: version}), whichever engine ran."""


def short_hash(values: dict[str, Any]) -> str:
    """12 hex digits of the SHA-256 of canonical JSON: stable across runs, machines and Python versions."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def experiment_block(config: dict[str, Any]) -> dict[str, Any]:
    """The experiment of a run from its (resolved) config; schema-1 configs are read as weak scaling.

    `work_id` leaves the engine out: the same work under any engine, which engine comparisons pair.
    """
    fields = {name: config.get(name) for name in WORK_FIELDS}
    for name in ("options", "engine_options"):
        if fields[name] is None:
            fields[name] = {}
    for name, default in STEP_FIELDS.items():
        fields[name] = config.get(name, default)
    scaling = config.get("scaling") or "weak"
    fields["scaling"] = scaling
    if scaling == "strong":
        fields["global_batch_size"] = config.get("global_batch_size")
    else:
        fields["batch_size"] = config.get("batch_size")
    same_work = {k: v for k, v in fields.items() if k not in ("engine", "engine_options")}
    return {**fields, "experiment_id": short_hash(identity(fields)), "work_id": short_hash(identity(same_work)),
            "label": experiment_label(fields)}


def identity(fields: dict[str, Any]) -> dict[str, Any]:
    """What the ids hash: options that arrived later count only when not at their default, so runs
    recorded before them keep their ids (engine options at "off", and fp32 eager NCHW, change nothing)."""
    hashed = {k: v for k, v in fields.items() if k not in STEP_FIELDS or v != STEP_FIELDS[k]}
    if "engine_options" in hashed:
        hashed["engine_options"] = {k: v for k, v in hashed["engine_options"].items() if v not in (None, False, "none")}
    return hashed


def experiment_label(fields: dict[str, Any]) -> str:
    """One line a person can read: `mlp hidden_size=1024 num_layers=2 synthetic ddp cpu b128/proc`."""
    options = " ".join(f"{k}={v}" for k, v in sorted((fields.get("options") or {}).items()) if v is not None)
    engine_options = " ".join(f"{k}={v}" for k, v in sorted((fields.get("engine_options") or {}).items())
                              if v not in (None, False, "none"))
    threads = f"{fields['num_threads']}thr" if fields.get("num_threads") else ""
    batch = (f"B{fields.get('global_batch_size')} global" if fields.get("scaling") == "strong"
             else f"b{fields.get('batch_size')}/proc")
    step = " ".join(name.replace("_", "-") if value is True else str(value) if name in NAMED_BY_VALUE
                    else f"{name.replace('_', '-')}={value:g}" if isinstance(value, float) else f"{name.replace('_', '-')}={value}"
                    for name, value in ((n, fields.get(n)) for n in STEP_FIELDS)
                    if value is not None and value != STEP_FIELDS[name])  # fp32 eager NCHW throughput goes unsaid
    parts = [fields.get("workload"), options, fields.get("data"), step, fields.get("engine"), engine_options,
             fields.get("device"), threads, batch]
    return " ".join(str(part) for part in parts if part)


def system_name(configured: str | None, hostnames: list[str] | None) -> str:
    """The name users gave (profile `system`, --system), else the first host without domain and
    trailing digits (`node012.cluster` -> `node`), else 'unknown'."""
    if configured:
        return str(configured)
    first = hostnames[0] if isinstance(hostnames, list) and hostnames else "unknown"
    host = str(first).split(".")[0]
    return re.sub(r"[-_]?\d+$", "", host) or host


def hardware_id(system: dict[str, Any]) -> str:
    """A system by its name and hardware only: one history runs across a torch, CUDA or NCCL upgrade (whose
    effect is what a history is for), where `system_id` changes with the software and starts a new curve."""
    return short_hash({"name": system.get("name"), **{k: system.get(k) for k in HARDWARE_FIELDS
                                                       if k != "network" or system.get(k) is not None}})


def system_block(provenance: dict[str, Any], configured_name: str | None = None) -> dict[str, Any]:
    """The system of a run from its provenance; facts an older record lacks stay null."""
    facts = provenance.get("system_facts")
    facts = facts if isinstance(facts, dict) else {}  # a record read back may hold anything
    hardware = {name: facts.get(name, provenance.get(name)) for name in HARDWARE_FIELDS}
    software = {name: facts.get(name, provenance.get(name)) for name in SOFTWARE_FIELDS}
    return {
        "name": system_name(configured_name, provenance.get("hostnames")),
        **hardware,
        **software,
        "system_id": short_hash({k: v for k, v in {**hardware, **software}.items() if k != "network" or v is not None}),
    }
