"""`hpcbench netbench`: nccl-tests' definitions per collective, its correctness check, and backends
side by side (gloo through the DDP engine, MPI through mpi4py under mpirun)."""

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import cli_in_process, read_records, run_cli
from hpcbench.probes.netbench import (COLLECTIVES, bus_factor, count_wrong, element_count, expected, measure, parse_size,
                               pattern, size_range)


def simulate(collective: str, world_size: int, count: int) -> list[np.ndarray]:
    """Each rank's output, computed from every rank's pattern() input the way the collective defines it."""
    chunk = count // world_size
    inputs = [pattern(r, count) for r in range(world_size)]
    if collective == "all_reduce":
        return [sum(inputs)] * world_size
    if collective == "all_gather":
        gathered = np.concatenate([pattern(r, chunk) for r in range(world_size)])
        return [gathered] * world_size
    if collective == "reduce_scatter":
        total = sum(inputs)
        return [total[r * chunk:(r + 1) * chunk] for r in range(world_size)]
    return [inputs[0]] * world_size


@pytest.mark.parametrize("collective", COLLECTIVES)
@pytest.mark.parametrize("world_size", [1, 3, 8])
def test_expected_values_match_the_collectives_definition(collective, world_size):
    count = element_count(collective, 1000, world_size)
    for rank, output in enumerate(simulate(collective, world_size, count)):
        assert count_wrong(output, expected(collective, rank, world_size, count)) == 0


def test_size_notation_and_steps_follow_nccl_tests():
    assert parse_size("8") == 8 and parse_size("64K") == 65536 and parse_size("256M") == 256 * 2**20
    sizes = size_range(8, parse_size("256M"), 2)  # nccl-tests -b 8 -e 256M -f 2
    assert sizes[0] == 8 and sizes[-1] == 256 * 2**20 and len(sizes) == 26
    assert element_count("all_gather", 8, 4) == 4  # at least one element per rank
    assert bus_factor("all_reduce", 4) == pytest.approx(1.5)
    assert bus_factor("all_gather", 4) == bus_factor("reduce_scatter", 4) == pytest.approx(0.75)
    assert bus_factor("broadcast", 4) == 1.0 and bus_factor("all_reduce", 1) == 0.0


class OneRank:
    """A world of one with numpy buffers: each collective copies its input; `corrupt` breaks all-reduce."""

    def __init__(self, corrupt: bool = False) -> None:
        self.placement = SimpleNamespace(rank=0, world_size=1)
        self.device = torch.device("cpu")
        self.corrupt = corrupt

    def buffer(self, values):
        return values.copy()

    def to_host(self, buffer):
        return buffer

    def all_reduce_sum_(self, buffer):
        if self.corrupt:
            buffer[-1] += 1  # a collective that gets one element wrong

    def all_gather_into_(self, output, chunk):
        output[:] = chunk

    def reduce_scatter_(self, output, full):
        output[:] = full

    def broadcast_(self, buffer, root):
        pass

    def barrier(self):
        pass

    def all_reduce_max(self, value):
        return value

    def all_gather_object(self, obj):
        return [obj]


def test_a_corrupted_collective_result_is_caught():
    for collective in COLLECTIVES:
        [row] = measure(OneRank(), collective, [1024], num_iters=2, num_warmup=1, check=True)
        assert row["wrong"] == 0 and row["size_bytes"] == 1024
    [row] = measure(OneRank(corrupt=True), "all_reduce", [1024, 64], num_iters=2, num_warmup=1, check=True)[:1]
    assert row["wrong"] == 1
    [unchecked] = measure(OneRank(corrupt=True), "all_reduce", [64], num_iters=1, num_warmup=0, check=False)
    assert unchecked["wrong"] is None


@pytest.mark.skipif(not shutil.which("mpirun"), reason="Open MPI not installed (Debian openmpi-bin; .ci/run installs it)")
def test_gloo_and_mpi_side_by_side(tmp_path):
    pytest.importorskip("mpi4py", reason="mpi4py not installed (pip install 'hpcbench[mpi]'; the test extra has it)")
    result = run_cli("netbench", "--backend", "gloo,mpi", "--nproc", "2", "--sizes", "8,4K,1M", "-n", "3", "-w", "1",
                     "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    found = {r["config"]["backend"]: r for r in read_records(tmp_path)}
    assert set(found) == {"gloo", "mpi"}
    for backend, record in found.items():
        assert record["kind"] == "netbench" and record["status"] == "ok"
        assert record["provenance"]["world_size"] == 2 and record["provenance"]["backend"] == backend
        assert set(record["metrics"]["collectives"]) == set(COLLECTIVES)
        for collective, rows in record["metrics"]["collectives"].items():
            assert [row["size_bytes"] for row in rows] == [8, 4096, 2**20]
            for row in rows:
                assert row["wrong"] == 0 and row["busbw_gbps"] > 0
                assert row["algbw_gbps"] == pytest.approx(row["size_bytes"] / row["time_s"] / 1e9)
                assert row["busbw_gbps"] == pytest.approx(row["algbw_gbps"] * bus_factor(collective, 2))
    mpi = found["mpi"]["provenance"]
    assert "Open MPI" in mpi["mpi_library"] and mpi["launcher"] == "mpirun" and mpi["buffers"] == "numpy"
    assert mpi["cuda_aware"] in (True, False, None) and mpi["cuda_aware_source"]
    assert found["gloo"]["config"]["engine"] == "ddp" and found["mpi"]["config"]["engine"] is None
    # compute beside all-reduces (the forecast's interference): measured with gloo's threads, not with MPI's
    gloo_beside = found["gloo"]["metrics"]["interference"]
    assert gloo_beside["factor"] >= 0 and gloo_beside["compute_beside_s"] > 0 and gloo_beside["all_reduce_bytes"] == 2**20
    assert gloo_beside["comm_slowdown"] is None or gloo_beside["comm_slowdown"] >= 0
    assert found["mpi"]["metrics"]["interference"]["factor"] is None
    header = [line for line in result.stdout.splitlines() if line.strip().startswith("size (B)")]
    assert len(header) == 4 and all("gloo" in line and "mpi" in line for line in header)


@pytest.mark.parametrize("args, field", [
    (["--backend", "tcp"], "backend"),
    (["--backend", "gloo", "--device", "cuda"], "device"),
    (["--collectives", "all_to_all"], "collectives"),
    (["--sizes", "2"], "sizes"),
])
def test_bad_input_is_one_line_and_no_record(tmp_path, args, field):
    result = cli_in_process("netbench", "--nproc", "2", *args, "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert field in line
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
