"""MPI's own collectives through mpi4py: netbench's MPI leg, the numbers a site's admins already
trust from OSU micro-benchmarks or nccl-tests built with MPI, set beside gloo's and NCCL's.

Not a training engine: it has the collectives netbench times (the same methods an `Engine` has
for them) and nothing of the training step. Buffers are NumPy arrays; CUDA tensors when netbench
runs on a GPU and this MPI is CUDA-aware (detected, recorded), else host arrays even then.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from typing import Any

import numpy as np
import torch

from hpcbench.engines.discovery import Placement
from hpcbench.errors import ConfigError

INSTALL_HINT = "pip install 'hpcbench[mpi]'"


def import_mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError:
        raise RuntimeError(f"the MPI backend needs mpi4py: {INSTALL_HINT}") from None
    return MPI


def cuda_aware(library_version: str) -> tuple[bool | None, str]:
    """Whether this MPI moves CUDA buffers itself, and how that was found (None: could not tell)."""
    if "Open MPI" not in library_version:
        return None, "unknown: only Open MPI's build flag (ompi_info) is read"
    try:
        found = subprocess.run(["ompi_info", "--parsable", "--all"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"unknown: ompi_info failed ({exc})"
    for line in found.splitlines():
        if "mpi_built_with_cuda_support:value:" in line:
            return line.rsplit(":", 1)[1] == "true", "ompi_info: mpi_built_with_cuda_support"
    return None, "unknown: ompi_info does not list mpi_built_with_cuda_support"


class MpiCollectives:
    """One rank of MPI_COMM_WORLD; rank and size are MPI's own."""

    backend = "mpi"

    @classmethod
    def check_available(cls) -> None:
        """Before any process starts: mpi4py importable and an mpirun to start the ranks."""
        if importlib.util.find_spec("mpi4py") is None:
            raise ConfigError("backend", f"{cls.backend} needs mpi4py: {INSTALL_HINT}")
        if shutil.which("mpirun") is None:
            raise ConfigError("backend", f"{cls.backend} needs mpirun on PATH (an MPI, e.g. Debian's openmpi-bin)")

    def __init__(self, placement: Placement, device_type: str, timeout_s: float) -> None:
        self.MPI = MPI = import_mpi()
        self.comm = MPI.COMM_WORLD
        self.placement = Placement(rank=self.comm.Get_rank(), local_rank=placement.local_rank,
                                   world_size=self.comm.Get_size(), local_world_size=placement.local_world_size,
                                   launcher=placement.launcher, mpi=True)
        self.library = MPI.Get_library_version().strip()
        found = cuda_aware(self.library) if self.placement.rank == 0 else None
        self.cuda_aware, self.cuda_aware_source = self.comm.bcast(found, root=0)
        self.on_gpu = device_type == "cuda" and self.cuda_aware is True
        if self.on_gpu:
            self.device = torch.device("cuda", placement.local_rank % torch.cuda.device_count())
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        # no timeout: MPI has none; the launcher (mpirun, srun) ends the job when a rank dies

    def buffer(self, values: np.ndarray) -> Any:
        return torch.from_numpy(values).to(self.device) if self.on_gpu else np.ascontiguousarray(values)

    def to_host(self, buffer: Any) -> np.ndarray:
        return buffer.cpu().numpy() if self.on_gpu else buffer

    def all_reduce_sum_(self, buffer: Any) -> None:
        self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)

    def all_gather_into_(self, output: Any, chunk: Any) -> None:
        self.comm.Allgather(chunk, output)

    def reduce_scatter_(self, output: Any, full: Any) -> None:
        self.comm.Reduce_scatter_block(full, output, op=self.MPI.SUM)

    def broadcast_(self, buffer: Any, root: int) -> None:
        self.comm.Bcast(buffer, root=root)

    def barrier(self) -> None:
        self.comm.Barrier()

    def all_reduce_max(self, value: float) -> float:
        return float(self.comm.allreduce(value, op=self.MPI.MAX))

    def all_gather_object(self, obj: Any) -> list[Any]:
        return self.comm.allgather(obj)

    def versions(self) -> dict[str, Any]:
        import mpi4py

        major, minor = self.MPI.Get_version()
        return {"backend": self.backend, "mpi_library": self.library, "mpi_standard": f"{major}.{minor}",
                "mpi4py": mpi4py.__version__, "cuda_aware": self.cuda_aware, "cuda_aware_source": self.cuda_aware_source,
                "buffers": "cuda" if self.on_gpu else "numpy", "nccl": None}

    def close(self) -> None:
        """MPI_Finalize: Open MPI's mpirun counts a rank that exits without it as failed (ranks end with os._exit)."""
        self.MPI.Finalize()
