"""Shared test helpers: run the real CLI in a subprocess, write tiny datasets in torchvision's formats."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import pathguard

REPO = Path(__file__).resolve().parent.parent


def _horovod_cache() -> Path:
    """Where `python -m hpcbench.install_horovod` keeps its wheel, read from its module alone: importing it through
    hpcbench.engines imports torch (4 s in pytest's controller, which runs no test)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("horovod_install", REPO / "hpcbench" / "engines" / "horovod_install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CACHE


# --- machine state: the only fixed paths a test may share with the machine, named here and nowhere else.
# Everything else a test reads or writes it makes first, under tmp_path or the suite's own TMPDIR (below).
SLURM_DIR = Path(os.environ.get("HPCBENCH_SLURM_DIR", "/tmp/hpcbench-slurm"))
MACHINE_STATE = {
    "the emulated Slurm cluster (jobs/local-slurm.sh up; .ci/run starts it before the tests)": SLURM_DIR,
    "the Horovod wheel built against this torch (python -m hpcbench.install_horovod)": _horovod_cache(),
}
SUITE_TMP = "HPCBENCH_SUITE_TMPDIR"
"""The suite's own temporary folder, made fresh for each run and handed to every process the tests start."""


def pytest_configure(config: pytest.Config) -> None:
    """A fresh TMPDIR for the run, the libraries' home folders inside it, and the path guard (tests/pathguard.py)
    in this process and, through PYTHONPATH, every Python process the tests start. xdist's workers inherit it."""
    if hasattr(config, "workerinput"):
        pathguard.install()
        return
    machine_tmp = tempfile.gettempdir()
    suite = Path(tempfile.mkdtemp(prefix="hpcbench-tests-", dir=machine_tmp))
    suite.chmod(0o755)  # munged's socket folder (a test's own emulated cluster) must be traversable by all
    home = suite / "home"  # libraries' caches and settings (matplotlib, Jupyter, IPython, torch hub): empty, as on a new machine
    os.environ.update({
        SUITE_TMP: str(suite), "TMPDIR": str(suite), "MPLCONFIGDIR": str(home / "matplotlib"),
        "XDG_CACHE_HOME": str(home / "cache"), "XDG_CONFIG_HOME": str(home / "config"), "XDG_DATA_HOME": str(home / "share"),
        "IPYTHONDIR": str(home / "ipython"), "JUPYTER_CONFIG_DIR": str(home / "jupyter"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "tests" / "site"), os.environ.get("PYTHONPATH")])),
        pathguard.LOG_VARIABLE: str(suite / "path-guard.jsonl"),
        pathguard.WATCH_VARIABLE: os.pathsep.join([machine_tmp, "/tmp", "/var/tmp", str(Path.home())]),
        pathguard.ALLOW_VARIABLE: os.pathsep.join([str(suite), *map(str, MACHINE_STATE.values()), str(REPO),
                                                   str(REPO / "results" / "reference"), sys.prefix, sys.base_prefix]),
        pathguard.DENY_VARIABLE: str(REPO / "results"),  # records an earlier run left in the checkout
        pathguard.OURS_VARIABLE: os.pathsep.join([*(str(REPO / name) for name in ("hpcbench", "analysis", "tests",
                                                                                  "benchmarks", "jobs")),
                                                  *([str(config.rootpath)] if config.rootpath != REPO else [])]),
    })
    tempfile.tempdir = str(suite)  # pytest's tmp_path and every tempfile call in this process
    pathguard.install()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Touches no test was failed for (a module fixture's teardown, a process that outlived its test) fail the
    run; a clean run leaves no folder behind."""
    if hasattr(session.config, "workerinput") or SUITE_TMP not in os.environ:
        return
    touched = pathguard.read_log(os.environ[pathguard.LOG_VARIABLE])
    if touched:
        print("\npath guard: the tests touched machine state outside the suite's TMPDIR and MACHINE_STATE "
              "(tests/conftest.py):", *(f"  {e['test'] or '(no test)'}: {line}" for e in touched for line in pathguard.describe([e])),
              sep="\n", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if session.exitstatus == pytest.ExitCode.OK:
        left: list[str] = []
        shutil.rmtree(os.environ[SUITE_TMP], onerror=lambda _f, path, exc: left.append(f"{path}: {exc[1]}"))
        if left:
            print(f"the suite's TMPDIR could not be removed whole ({len(left)} paths), first: {left[0]}", file=sys.stderr)
    else:
        print(f"the suite's TMPDIR, kept: {os.environ[SUITE_TMP]}", file=sys.stderr)


@pytest.fixture(autouse=True)
def no_machine_state(request: pytest.FixtureRequest):
    """Fails the test (at teardown) that read or wrote a fixed path outside its own folders, in any process."""
    yield
    log = os.environ.get(pathguard.LOG_VARIABLE)
    touched = [e for e in pathguard.read_log(log) if e["test"].rsplit(" (", 1)[0] == request.node.nodeid] if log else []
    if touched:
        pytest.fail("touched machine state (make it under tmp_path, or name it in MACHINE_STATE in tests/conftest.py):\n"
                    + "\n".join(f"  {line}" for line in pathguard.describe(touched)), pytrace=False)


def run_cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m hpcbench ARGS` as a user would type it; `env` adds to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "hpcbench", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )


class WouldRun(Exception):
    """Raised by `cli_in_process` where a run, sweep or submission would have started."""


def cli_in_process(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`hpcbench ARGS` called in this process: for refused input and for rendering, which start nothing.

    The same `cli.main` the console script calls, without a new interpreter importing torch (3-5 s on a
    2-core CI machine, which ~90 such tests paid). Anything that would start training, launch ranks or
    submit a job raises WouldRun instead, so input that wrongly passes fails the test, not the machine.
    The real entry point (`python -m hpcbench`, its exit code) is pinned by subprocess tests beside these."""
    from unittest import mock

    from hpcbench import cli

    def would_run(*_args, **_kwargs):
        raise WouldRun(args)

    stdout, stderr = io.StringIO(), io.StringIO()
    with (mock.patch.dict(os.environ, env or {}), mock.patch("hpcbench.launch.local.run_local", would_run),
          mock.patch("hpcbench.sweep.run_grid", would_run), mock.patch("hpcbench.launch.submit.submit_sweep", would_run),
          mock.patch("hpcbench.launch.local.run_probe", would_run),
          contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr)):
        try:
            code = cli.main(list(args))
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
    return subprocess.CompletedProcess(["hpcbench", *args], code, stdout.getvalue(), stderr.getvalue())


class LaunchedRun:
    """`python -m hpcbench ARGS` in the background, for fault tests that signal or kill its processes."""

    def __init__(self, *args: str, env: dict | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hpcbench", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})},
        )
        self.stderr_lines: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self.stderr_lines.append(line)

    def wait_for_workers(self, count: int, timeout: float = 60) -> list[int]:
        from hpcbench.launch.local import worker_pids  # at any depth: horovodrun nests them

        deadline = time.monotonic() + timeout
        while len(workers := worker_pids(self.process.pid)) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(workers) == count, f"expected {count} workers, found {workers}"
        return workers

    def wait_for_stderr(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.stderr_lines):
            assert time.monotonic() < deadline and self.process.poll() is None, "".join(self.stderr_lines)[-3000:]
            time.sleep(0.05)

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        """(exit code, stderr) once the launcher has exited."""
        self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return self.process.returncode, "".join(self.stderr_lines)


def assert_refused_on_every_rank(result: subprocess.CompletedProcess, num_ranks: int) -> None:
    """One line per rank naming the folder, a non-zero exit, and no step trained."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("hpcbench worker: error: out: ")]
    assert len(lines) == num_ranks, result.stderr[-3000:]
    assert all("cannot write records to " in line and "Not a directory" in line for line in lines), lines
    assert result.returncode != 0
    assert "warm-up done" not in result.stderr and "Traceback" not in result.stderr.split("hpcbench worker:")[0]


SMALL = {
    "cnn": ["--model", "resnet18", "--batch-size", "4"],
    "mlp": ["--batch-size", "16"],
    "finetune": ["--image-size", "32", "--trainable-blocks", "1", "--batch-size", "4"],
    "vae": ["--architecture", "conv", "--batch-size", "8"],
    "rnn": ["--vocab-size", "300", "--seq-len", "16", "--batch-size", "4"],
    "rl": ["--num-envs", "4", "--batch-size", "64"],
    "gpt": ["--batch-size", "4"],
}
"""Small settings for every workload (every registered workload needs an entry here)."""
SMALL_OPTIONS = {"cnn": {"model": "resnet18"}, "finetune": {"image_size": 32, "trainable_blocks": 1},
                 "vae": {"architecture": "conv"}, "rnn": {"vocab_size": 300, "seq_len": 16}, "rl": {"num_envs": 4}}
"""SMALL's workload options, for sweep files (one batch size for all there: 8 fits each)."""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def read_records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def write_mnist(root: Path, num_images: int = 64, seed: int = 0) -> Path:
    """MNIST idx files (big-endian header, uint8 payload) where torchvision's MNIST looks for them."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, count in (("train", num_images), ("t10k", 8)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, count, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, count) + labels.tobytes())
    return root


def write_cifar10(root: Path, images_per_batch: int = 16, seed: int = 0) -> Path:
    """CIFAR-10 python pickles (N x 3072 uint8 rows, CHW order) in cifar-10-batches-py/."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "data": rng.integers(0, 256, (images_per_batch, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, images_per_batch).tolist(),
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    return root


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "results"
    path.mkdir()
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long files first. pytest-xdist's --dist loadfile hands out whole files in collection order (with
    --no-loadscope-reorder, in pyproject.toml: by default xdist reorders files by their number of tests,
    which undid this), so a long file collected last (test_tta.py, alphabetically) ran alone at the end
    while the other process idled. Files with a slurm- or slow-marked test go first, the rest keep their order."""
    def weight(item: pytest.Item) -> int:
        marks = {mark.name for mark in item.iter_markers()}
        return 0 if "slurm" in marks else 1 if "slow" in marks else 2

    first_seen: dict[str, int] = {}
    for item in items:
        path = str(item.path)
        first_seen[path] = min(first_seen.get(path, 2), weight(item))
    items.sort(key=lambda item: first_seen[str(item.path)])  # stable: a file's tests stay together, in order


# --- the local Slurm cluster (jobs/local-slurm.sh), shared by the cluster tests
SLURM_IDLE_WAIT_S = 300


@pytest.fixture(scope="module")
def slurm_env() -> dict:
    # As local-slurm.sh's env file says: both nodes are this host, so MPI talks TCP over loopback.
    env = {"SLURM_CONF": str(SLURM_DIR / "slurm.conf"), "OMPI_MCA_btl": "self,tcp", "OMPI_MCA_btl_tcp_if_include": "lo"}
    if os.geteuid() == 0:  # Open MPI refuses root unless told
        env |= {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    if not shutil.which("sinfo") or not (SLURM_DIR / "slurm.conf").exists():
        pytest.skip("no local Slurm cluster: run `jobs/local-slurm.sh up` (.ci/run does)")
    # The other pytest process may have jobs on it (both cluster files start first, one per process): wait
    # for an idle node rather than skip a test that can run (CI skipped one so, at "1 mix").
    deadline = time.monotonic() + SLURM_IDLE_WAIT_S
    while True:
        idle = subprocess.run(["sinfo", "-h", "-o", "%D %t"], capture_output=True, text=True, env={**os.environ, **env})
        if idle.returncode == 0 and "idle" in idle.stdout:
            return env
        if time.monotonic() > deadline:
            pytest.skip(f"local Slurm cluster not idle after {SLURM_IDLE_WAIT_S} s: {idle.stdout.strip()} "
                        f"{idle.stderr.strip()}")
        time.sleep(2)


def scontrol_job(job_id: str, env: dict) -> dict[str, str]:
    text = subprocess.run(["scontrol", "show", "job", job_id, "--oneliner"], capture_output=True, text=True,
                          env={**os.environ, **env}, check=True).stdout
    return dict(re.findall(r"(\w+)=(\S+)", text))


def wait_for_sweep(sweep: Path, env: dict, timeout: float = 240) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = run_cli("status", str(sweep), env=env, timeout=60)
        states = [line.split()[1] for line in result.stdout.splitlines()]
        if states and all(state in ("done", "failed", "blocked") for state in states):
            return states
        time.sleep(1)
    pytest.fail(f"sweep did not finish: {result.stdout}")


def submit(sweep: Path, env: dict, *args: str, profile: str = "local-slurm") -> list[str]:
    """A small mlp sweep submitted with `hpcbench submit`; the job ids, the report job's last."""
    result = run_cli("submit", "--profile", profile, "--threads", "1", "--workload", "mlp", "--steps", "5",
                     "--batch-size", "8", "--device", "cpu", "--sweep-dir", str(sweep), *args, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return [line.split("\t")[0] for line in result.stdout.splitlines() if "\t" in line]
