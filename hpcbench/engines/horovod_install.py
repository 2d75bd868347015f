"""Build Horovod from its PyPI sdist against the torch already installed, cache the wheel, install it.

Horovod's last release (0.28.1) does not build against current PyTorch as shipped; this applies
what worked (see the project's FACTS): the C++ standard torch needs (17, or 20 from torch 2.14),
CMAKE_POLICY_VERSION_MINIMUM for its bundled gloo under CMake 4, CUDA paths when torch is a CUDA
build, MPI when `mpicc` exists. A wheel is tied to the exact torch it was built against, so the
cache key holds the torch version; the next call installs from the cache in seconds.

    python -m hpcbench.install_horovod            # build (or reuse) and install (this module, by its short name)
    python -m hpcbench.install_horovod --print-cache-key
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HOROVOD_VERSION = "0.28.1"
BUILD_REQUIREMENTS = ["numpy", "packaging", "wheel", "setuptools", "psutil", "pyyaml", "cloudpickle", "cffi"]
CACHE = Path(os.environ.get("HPCBENCH_HOROVOD_CACHE", Path.home() / ".cache" / "hpcbench" / "horovod"))


def torch_facts() -> tuple[str, str | None]:
    import torch

    return torch.__version__, torch.version.cuda


def cache_key() -> str:
    torch_version, cuda = torch_facts()
    mpi = "mpi" if shutil.which("mpicc") else "nompi"
    return f"horovod-{HOROVOD_VERSION}_torch-{torch_version}_py{sys.version_info.major}{sys.version_info.minor}_{mpi}"


def cxx_standard(torch_version: str) -> str:
    major, minor = (int(x) for x in re.match(r"(\d+)\.(\d+)", torch_version).groups())
    return "20" if (major, minor) >= (2, 14) else "17"


def build_environment() -> dict[str, str]:
    torch_version, cuda = torch_facts()
    env = {
        **os.environ,
        "HOROVOD_WITH_PYTORCH": "1", "HOROVOD_WITH_GLOO": "1", "HOROVOD_WITHOUT_TENSORFLOW": "1",
        "HOROVOD_WITHOUT_MXNET": "1", "HOROVOD_CPU_OPERATIONS": "gloo",
        "CMAKE_POLICY_VERSION_MINIMUM": "3.5",  # its bundled gloo asks for CMake < 3.5
        "MAKEFLAGS": f"-j{os.cpu_count() or 1}",
    }
    if shutil.which("mpicc"):
        env["HOROVOD_WITH_MPI"] = "1"
    else:
        env["HOROVOD_WITHOUT_MPI"] = "1"
    if cuda:  # a CUDA build of torch takes Horovod's CUDA path, GPU or not
        cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
        env.update(CUDA_HOME=cuda_home, HOROVOD_CUDA_HOME=cuda_home)
        env.setdefault("HOROVOD_BUILD_CUDA_CC_LIST", "80,90")
    return env


def patch_sources(source: Path, standard: str) -> None:
    """Both CMakeLists pin C++14; torch >= 2.1 needs 17 and torch 2.14 needs 20."""
    for cmake in (source / "CMakeLists.txt", source / "horovod" / "torch" / "CMakeLists.txt"):
        text = cmake.read_text()
        patched = re.sub(r"set\(CMAKE_CXX_STANDARD \d+\)", f"set(CMAKE_CXX_STANDARD {standard})", text)
        if patched == text:
            raise RuntimeError(f"{cmake}: no CMAKE_CXX_STANDARD line to patch; has the sdist changed?")
        cmake.write_text(patched)


def build_wheel(target: Path) -> Path:
    pip = [sys.executable, "-m", "pip"]
    cmake = [] if shutil.which("cmake") else ["cmake"]  # Debian's 3.25 works; PyPI's 4.x with the policy variable
    subprocess.run([*pip, "install", "-q", *BUILD_REQUIREMENTS, *cmake], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([*pip, "download", "-q", "--no-deps", "--no-binary", ":all:", f"horovod=={HOROVOD_VERSION}",
                        "-d", tmp], check=True)
        [sdist] = Path(tmp).glob("horovod-*.tar.gz")
        with tarfile.open(sdist) as archive:
            archive.extractall(tmp, filter="data")
        source = Path(tmp) / f"horovod-{HOROVOD_VERSION}"
        patch_sources(source, cxx_standard(torch_facts()[0]))
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run([*pip, "wheel", "--no-build-isolation", "--no-deps", "-w", str(target), str(source)],
                       check=True, env=build_environment())
    [wheel] = target.glob("horovod-*.whl")
    return wheel


def install() -> Path:
    folder = CACHE / cache_key()
    wheels = sorted(folder.glob("horovod-*.whl"))
    wheel = wheels[0] if wheels else build_wheel(folder)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "cloudpickle", "psutil", "pyyaml", "packaging", "cffi"],
                   check=True)  # Horovod's runtime requirements, without letting pip touch torch
    return wheel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print-cache-key", action="store_true", help="print the wheel's cache folder and exit")
    args = parser.parse_args()
    if args.print_cache_key:
        print(CACHE / cache_key())
        return
    print(f"hpcbench: Horovod installed from {install()}")


if __name__ == "__main__":
    main()
