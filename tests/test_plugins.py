"""Every axis is a plug-in: a new engine, measurement, run mode, scheduler or launcher is one class,
registered, and the runner, the flags, the renderer and the submitter use it without a change."""

import argparse
import contextlib
import time
from pathlib import Path

import pytest
import torch

from hpcbench.config import RunConfig
from hpcbench.engines import ENGINES, Placement
from hpcbench.engines.base import Engine
from hpcbench.errors import ConfigError
from hpcbench.flags import add_run_arguments, config_from_namespace, config_to_args
from hpcbench.guard import StopSignals
from hpcbench.launch.jobs import SiteProfile, plan_sweep, render_sweep
from hpcbench.launch.launchers import LAUNCHERS, Launcher
from hpcbench.launch.schedulers import SCHEDULERS, Scheduler, current
from hpcbench.launch.schedulers.base import Raw
from hpcbench.measurements import MEASUREMENTS, THROUGHPUT, Measurement
from hpcbench.modes import RUN_MODES, RunMode
from hpcbench.resolve import resolve
from hpcbench.runner import build_record, measure


@contextlib.contextmanager
def registered(registry, cls):
    registry.register(cls)
    try:
        yield cls
    finally:
        registry._classes.pop(cls.name)


class SoloEngine(Engine):
    """A one-process engine with no communication library: what a new engine module looks like."""

    name = "solo"
    description = "one process, no communication (test)"
    flag_prefix = "solo"

    from dataclasses import dataclass

    @dataclass(kw_only=True)
    class Options:
        clip: float = 0.0
        """clip gradients to this norm before each step (0: off)"""

    def __init__(self, placement, device_type, timeout_s, options):
        self.placement = Placement(rank=0, local_rank=0, world_size=1, local_world_size=1, launcher=placement.launcher)
        self.device = torch.device("cpu")
        self.backend = "none"
        self.options = options
        self.calls = {"backward": 0, "step": 0}

    @classmethod
    def backend_for(cls, device_type):
        return "none"

    def backward(self, loss):
        self.calls["backward"] += 1
        loss.backward()

    def step(self, optimizer):
        self.calls["step"] += 1
        if self.options.clip:
            torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]],
                                           self.options.clip)
        optimizer.step()

    def barrier(self):
        pass

    def all_reduce_max(self, value):
        return value

    def all_reduce_max_async(self, values):
        return lambda: list(values)

    def all_gather_object(self, obj):
        return [obj]


def solo_run(cfg: RunConfig):
    engine = SoloEngine(Placement(rank=0, local_rank=0, world_size=1, local_world_size=1, launcher="none"), "cpu", 60,
                        SoloEngine.Options(**cfg.engine_options))
    mine = measure(cfg, engine, time.perf_counter, StopSignals())
    return engine, build_record(cfg, "test-run", [mine], engine, "start", "none")


def test_a_new_engine_gets_flags_and_runs_the_unchanged_loop():
    with registered(ENGINES, SoloEngine):
        parser = argparse.ArgumentParser()
        add_run_arguments(parser)
        args = parser.parse_args(["--engine", "solo", "--solo-clip", "1.5", "--workload", "mlp", "--device", "cpu",
                                  "--batch-size", "8", "--steps", "3", "--warmup", "1", "--repeats", "2"])
        cfg = resolve(config_from_namespace(args))
        assert cfg.engine_options == {"clip": 1.5}
        assert "--solo-clip" in config_to_args(cfg)
        engine, record = solo_run(cfg)
    assert engine.calls == {"backward": 7, "step": 7}  # 1 warm-up + 2 x 3 timed steps, all through the engine
    assert record["status"] == "ok" and record["metrics"]["samples_per_s"] > 0
    assert record["config"]["engine_options"] == {"clip": 1.5}


def test_engine_options_of_another_engine_are_refused():
    with registered(ENGINES, SoloEngine):
        parser = argparse.ArgumentParser()
        add_run_arguments(parser)
        with pytest.raises(ConfigError, match="the --solo-\\* options apply to --engine solo only"):
            config_from_namespace(parser.parse_args(["--solo-clip", "1"]))
        with pytest.raises(ConfigError) as info:
            resolve(RunConfig(engine="solo", device="cpu", engine_options={"nope": 1}))
        assert info.value.field_name == "solo-nope"


class WindowLog(Measurement):
    """A measurement that records which windows it saw and how many steps: one module, registered."""

    name = "window_log"
    order = 10

    def __init__(self, ctx):
        super().__init__(ctx)
        self.events = []
        self.steps = 0

    def start(self, window):
        self.events.append(("start", window))

    def step_done(self, window):
        self.steps += 1

    def stop(self, window, complete):
        self.events.append(("stop", window, complete))

    def rank_result(self):
        return {"window_events": self.events, "window_steps": self.steps}

    @classmethod
    def merge(cls, ranks, run):
        return {"window_steps_total": sum(r["window_steps"] for r in ranks), "window_world_size": run.world_size}


def test_a_new_measurement_is_taken_around_every_window_and_merged_into_the_record():
    with registered(ENGINES, SoloEngine), registered(MEASUREMENTS, WindowLog):
        cfg = resolve(RunConfig(workload="mlp", engine="solo", device="cpu", batch_size=8, num_steps=3,
                                num_warmup_steps=1, num_repeats=2))
        _, record = solo_run(cfg)
    [rank] = record["ranks"]
    assert rank["window_events"] == [("start", THROUGHPUT), ("stop", THROUGHPUT, True)] * 2
    assert rank["window_steps"] == 6  # timed steps only: warm-up is no window
    assert record["metrics"]["window_steps_total"] == 6 and record["metrics"]["window_world_size"] == 1
    assert len(rank["step_times_s"]) == 2  # step timing still there beside it


class Soak(RunMode):
    """Timed windows back to back, no warm-up, no breakdown: what a new run mode module looks like."""

    name = "soak-test"
    description = "windows back to back (test)"

    def run(self, session):
        for _ in range(session.cfg.num_repeats):
            if session.window(THROUGHPUT, session.cfg.num_steps):
                break
            session.repeats_done += 1
        session.results["soak_windows"] = session.repeats_done
        session.snapshot_replicas()

    @classmethod
    def merge(cls, per_rank):
        return {**super().merge(per_rank), "soak_windows": per_rank[0]["soak_windows"]}


def test_a_new_run_mode_is_one_module_and_drives_the_unchanged_step():
    with registered(ENGINES, SoloEngine), registered(RUN_MODES, Soak):
        parser = argparse.ArgumentParser()
        add_run_arguments(parser)
        [mode_flag] = [action for action in parser._actions if action.dest == "mode"]
        assert "(throughput, tta, soak-test)" in mode_flag.help
        cfg = resolve(RunConfig(workload="mlp", engine="solo", device="cpu", mode="soak-test", batch_size=8,
                                num_steps=3, num_warmup_steps=5, num_repeats=2))
        engine, record = solo_run(cfg)
    assert engine.calls == {"backward": 6, "step": 6}  # no warm-up: the mode's two windows of 3 steps only
    assert record["status"] == "ok" and record["metrics"]["soak_windows"] == 2
    assert len(record["ranks"][0]["step_times_s"]) == 2 and record["metrics"]["samples_per_s"] > 0
    assert record["metrics"]["tta"] is None and record["metrics"]["compute_step_time_s"] is None
    with pytest.raises(ConfigError, match="mode: 'soak-test' is not one of: throughput, tta"):  # gone with its module
        resolve(RunConfig(mode="soak-test", device="cpu"))


class Flux(Scheduler):
    """A scheduler that is not shipped: one class and its template."""

    name = "flux-test"
    template = "flux-test.sh.j2"
    launchers = ("fluxrun-test", "mpirun")
    default_launcher = "fluxrun-test"
    rendezvous = "export MASTER_ADDR=$(flux getattr rank0-host)\nexport MASTER_PORT=29500"
    job_id = Raw('"$FLUX_JOB_ID"')
    submitted = []

    @classmethod
    def submit(cls, script, after, whatever_end=False):
        cls.submitted.append((Path(script).name, list(after)))
        return f"f{len(cls.submitted)}"

    @classmethod
    def in_job(cls, env):
        return "FLUX_JOB_ID" in env

    @classmethod
    def facts(cls, env):
        return {"scheduler": cls.name, "job_id": env["FLUX_JOB_ID"]}


class FluxRun(Launcher):
    name = "fluxrun-test"

    @classmethod
    def command(cls, shape, scheduler, python, module_args):
        return ["flux", "run", "-N", str(shape.nodes), "-n", str(shape.num_tasks), *python, *module_args]


def test_a_new_scheduler_and_launcher_render_submit_and_describe_jobs(tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "flux-test.sh.j2").write_text("#!/bin/bash\n#FLUX: -N {{ nodes }}\n{% include 'body.sh.j2' %}")
    with registered(SCHEDULERS, Flux), registered(LAUNCHERS, FluxRun):
        profile = SiteProfile(scheduler="flux-test", cpus_per_node=4, python="python3")
        specs = plan_sweep(RunConfig(workload="mlp"), profile=profile, launcher=None, node_counts=[1, 2],
                           tasks_per_node=2, threads_per_task=1, sweep_dir=tmp_path / "sweep", job_name="t")
        scripts = render_sweep(specs, templates)
        text = scripts[tmp_path / "sweep" / "job_2n.sh"]
        assert "#FLUX: -N 2" in text and "flux getattr rank0-host" in text
        assert "flux run -N 2 -n 4 python3 -m hpcbench.worker --workload mlp" in text

        from hpcbench.launch.submit import submit_sweep

        paths = list(scripts)
        (tmp_path / "sweep").mkdir()
        state = submit_sweep("flux-test", paths[:-1], paths[-1])
        assert Flux.submitted == [("job_1n.sh", []), ("job_2n.sh", []), ("aggregate.sh", ["f1", "f2"])]
        assert state["aggregate"]["job_id"] == "f3"
        assert current({"FLUX_JOB_ID": "f9"}) is Flux
    assert "flux-test" not in SCHEDULERS.names()
