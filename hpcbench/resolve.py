"""Config resolution: every default that depends on the workload, the engine or the machine.

It lives above the plug-ins it asks (workloads, engines), so that `config` stays a plain
description that every layer can import. The record stores the result, so a run can be
repeated from its record alone.
"""

from __future__ import annotations

import dataclasses
import os

from hpcbench.config import RunConfig
from hpcbench.engines import ENGINES
from hpcbench.errors import ConfigError
from hpcbench.modes import RUN_MODES
from hpcbench.plugins import resolve_options
from hpcbench.workloads import Workload, get_workload


def resolve(cfg: RunConfig, *, sweep_max_procs: int | None = None, world_size: int | None = None,
            node_device: str | None = None, data_on_nodes: bool = False) -> RunConfig:
    """Fill in and check the workload's and the engine's options, the batch size, threads and device.

    `world_size` is the job's process count where it differs from this node's (cluster jobs);
    strong scaling splits the global batch over it. `node_device` is the compute nodes' device when
    this is a login node (cluster jobs): precision and the like are checked against it. `data_on_nodes`
    (cluster jobs): the data folder is the compute nodes'; one this host cannot see is left to the job's
    ranks, which check it at start (`data_dir_unseen`).
    """
    engine = ENGINES.get(cfg.engine)
    engine.check_available()
    workload = get_workload(cfg.workload)
    options = workload.resolve_options(cfg.options)
    engine_options = resolve_options(engine.Options, cfg.engine_options, f"engine {engine.name!r}", engine.flag_prefix)
    total = world_size or cfg.num_procs
    replicas = total // engine.model_parallel_degree(engine.Options(**engine_options), total) or 1
    batch_size = strong_batch_size(cfg, replicas) if cfg.scaling == "strong" else (
        cfg.batch_size or workload.default_batch_size)
    mode = RUN_MODES.get(cfg.mode)
    data = cfg.data or mode.default_data(workload) or "synthetic"
    workload.check_run(workload.options(options), batch_size, data, cfg.data_dir)
    if data == "real" and not (data_on_nodes and not os.path.exists(cfg.data_dir or "")):
        check_real_data(workload, workload.options(options), cfg.data_dir or "")
    if data != "files":
        data_format = None
    elif data_on_nodes and data_dir_unseen(cfg):
        data_format = cfg.data_format  # the ranks find it, and check the folder, at start
    else:
        data_format = check_files(cfg, workload, workload.options(options), batch_size, replicas)
    by_mode = mode.resolve(cfg, workload, workload.options(options), data)
    threads = cfg.num_threads or max(1, (os.cpu_count() or 1) // max(cfg.num_procs, sweep_max_procs or 1))
    device = resolve_device(cfg.device, cfg.num_procs)
    workload.check_training(cfg.precision, cfg.channels_last, cfg.compile, node_device or device)
    if cfg.pin_memory and (node_device or device) != "cuda":
        raise ConfigError("pin-memory", f"applies to --device cuda only (this run's device: {node_device or device})")
    engine.check_training(engine.Options(**engine_options), cfg.precision, node_device or device)
    engine.check_model(lambda: workload.meta_model(workload.options(options)), workload.name)
    engine.check_split(engine.Options(**engine_options), total, workload.model_split(workload.options(options)),
                       batch_size, workload.name)
    if engine.schedules_forward_and_backward and cfg.mode != "throughput":
        raise ConfigError("mode", f"{cfg.mode} evaluates the whole model on every rank; engine {engine.name!r} holds "
                                  "one pipeline stage a rank: use --mode throughput")
    if engine.schedules_forward_and_backward and (cfg.compile or cfg.phases):
        flag = "compile" if cfg.compile else "phases"
        raise ConfigError(flag, f"engine {engine.name!r} runs forward and backward inside its pipeline schedule, which "
                                f"--{flag} cannot reach (the step's model is not what the schedule calls)")
    return dataclasses.replace(
        cfg,
        device=device,
        data=data,
        data_format=data_format,
        options=options,
        engine_options=engine_options,
        batch_size=batch_size,
        num_threads=threads,
        **by_mode,
    )


def check_real_data(workload: Workload, options: object, data_dir: str) -> None:
    """--data real: the folder is there and the workload's dataset opens from it, before any process starts.
    Nothing is downloaded, so a missing dataset is the user's to fetch: say where and in which layout."""
    if not os.path.exists(data_dir):
        raise ConfigError("data-dir", f"{data_dir} does not exist; --data real reads {workload.real_data} "
                                      "(nothing is downloaded)")
    try:
        workload.real_dataset(options, data_dir)
    except (RuntimeError, OSError, ValueError, IndexError) as exc:
        said = str(exc).split(". You can use download=True")[0].strip().splitlines()
        raise ConfigError("data-dir", f"{data_dir} holds no {workload.name} data: expected {workload.real_data} "
                                      f"({said[0] if said else type(exc).__name__}; nothing is downloaded)") from None


def data_dir_unseen(cfg: RunConfig) -> bool:
    """--data files with a folder this host cannot see: a cluster's data may sit on a file system only the
    compute nodes mount (a scratch or node-local copy), so a login node that lacks it is no reason to refuse."""
    return cfg.data == "files" and bool(cfg.data_dir) and not os.path.exists(cfg.data_dir)


def check_files(cfg: RunConfig, workload: Workload, options: object, batch_size: int, replicas: int) -> str:
    """--data files: the folder is there and whole (one stat a file), the workload reads images, and there is
    enough to feed every rank (a whole batch each; a shard for every loader worker). Returns the format."""
    from hpcbench import datafiles

    workload.file_transform(options)  # a workload that reads no image files says so
    facts = datafiles.inspect(cfg.data_dir, cfg.data_format)
    if facts.format == "jpeg-folder" and facts.samples < batch_size * replicas:
        raise ConfigError("batch-size", f"{batch_size} x {replicas} ranks needs at least that many samples; "
                          f"{cfg.data_dir} holds {facts.samples}")
    readers = replicas * max(1, cfg.num_data_workers)
    if facts.format == "tar-shards" and len(facts.files) < readers:
        raise ConfigError("data-dir", f"{cfg.data_dir} holds {len(facts.files)} shards; {replicas} ranks x "
                          f"{max(1, cfg.num_data_workers)} loader workers need one each (shards are read whole: "
                          "make more with --shard-samples)")
    return facts.format


def strong_batch_size(cfg: RunConfig, world_size: int) -> int:
    """The per-process batch of a strong-scaling run: the global batch split evenly over the processes."""
    global_batch = cfg.global_batch_size
    if global_batch % world_size:
        raise ConfigError("global-batch-size", f"{global_batch} does not split evenly over {world_size} processes "
                          "(strong scaling gives every process the same batch)")
    per_process = global_batch // world_size
    if cfg.batch_size is not None and cfg.batch_size != per_process:
        raise ConfigError("batch-size", f"{cfg.batch_size} contradicts --global-batch-size {global_batch} over "
                          f"{world_size} processes ({per_process} each); give only --global-batch-size")
    return per_process


def resolve_device(device: str, num_procs: int) -> str:
    """'auto' becomes cuda when a GPU is visible; cuda needs one GPU per local process."""
    import torch

    num_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "auto":
        device = "cuda" if num_gpus else "cpu"
    if device == "cuda" and num_gpus < num_procs:
        raise ConfigError("device", f"cuda needs one GPU per process: {num_procs} processes, {num_gpus} GPU(s) visible")
    return device
