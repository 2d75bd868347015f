"""Image files in the formats people train from, made here (nothing can be downloaded) and read back as a
real input pipeline: fetch (a file or a shard member from storage), decode (libjpeg-turbo through
torchvision), the workload's augmentation, collate.

    jpeg-folder   torchvision's ImageFolder layout: OUT/<class>/<index>.jpg, one file per sample
    tar-shards    WebDataset's layout: OUT/shard-000000.tar ..., members <key>.jpg and <key>.cls

`make` writes either from scikit-learn's bundled digits (real images, no download), coloured, scaled to
the asked size and given a film-grain texture so JPEG sizes and decode costs are those of photographs
(0.6-0.7 bytes a pixel at quality 90), not of flat upscaled digits. Beside the files it writes
`hpcbench-data.json` (format, samples, classes, every file's size): `inspect` checks a folder against it
with one stat per file before anything trains, so a missing, empty, truncated or mixed-up folder is one
line, not a hang in a DataLoader worker.

Ranks read disjoint parts: folders through `DistributedSampler` (the map-style way), shards assigned
whole, rank r taking shards r, r+R, ... and its loader workers splitting those (WebDataset's
`split_by_node` then `split_by_worker`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from hpcbench.errors import ConfigError

FORMATS = ("jpeg-folder", "tar-shards")
MANIFEST = "hpcbench-data.json"
MANIFEST_VERSION = 1
IMAGE_SUFFIXES = (".jpg", ".jpeg")
DEFAULT_SHARD_SAMPLES = 256
JPEG_QUALITY = 90
GRAIN = 24.0
"""Film-grain standard deviation (0-255 scale): makes JPEG sizes photograph-like (0.6-0.7 bytes a pixel)."""


class DataFileError(RuntimeError):
    """A sample that cannot be read or decoded; the message starts with the file (and member) it came from."""


@dataclass(frozen=True)
class DataFacts:
    """What a data folder holds, from its manifest or a scan: what a run and iobench need."""

    root: str
    format: str
    samples: int
    classes: int
    files: list[str]
    """Relative paths: every image (jpeg-folder) or every shard (tar-shards), sorted."""
    bytes: int
    labels: list[int] | None = None
    """jpeg-folder: each file's class index (sorted class folders, as ImageFolder numbers them)."""

    def summary(self) -> dict[str, Any]:
        """For the record: what was read, not where it lay."""
        return {"format": self.format, "samples": self.samples, "classes": self.classes, "files": len(self.files),
                "bytes": self.bytes, "bytes_per_sample": self.bytes / max(self.samples, 1)}


def make(out: str | Path, fmt: str, samples: int, image_size: int, *, shard_samples: int = DEFAULT_SHARD_SAMPLES,
         seed: int = 0) -> DataFacts:
    """Write `samples` JPEG images of `image_size` pixels in `fmt` under `out` (which must be empty or absent)."""
    if fmt not in FORMATS:
        raise ConfigError("format", f"{fmt!r} is not one of: {', '.join(FORMATS)}")
    for name, value, low in (("samples", samples, 1), ("image-size", image_size, 8), ("shard-samples", shard_samples, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(name, f"must be an integer >= {low}, got {value!r}")
    root = Path(out)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigError("OUT", f"{root} exists and is not an empty folder (nothing written)")
    rng = np.random.default_rng(seed)
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True)
    try:
        _write(tmp, fmt, samples, image_size, shard_samples, rng)
        if root.exists():
            root.rmdir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing half-made is left behind, under any name
        raise
    tmp.rename(root)  # whole or not at all: a half-made folder never has the name
    return inspect(root, fmt)


def _write(tmp: Path, fmt: str, samples: int, image_size: int, shard_samples: int, rng: np.random.Generator) -> None:
    """The images and the manifest, into the folder that will be renamed into place."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits, labels = load_digits(return_X_y=True)
    sizes: dict[str, int] = {}
    shard: tarfile.TarFile | None = None
    for index in range(samples):
        source = index % len(labels)
        label = int(labels[source])
        jpeg = _encode(Image, digits[source], image_size, rng)
        if fmt == "jpeg-folder":
            rel = f"{label}/{index:07d}.jpg"
            (tmp / str(label)).mkdir(exist_ok=True)
            (tmp / rel).write_bytes(jpeg)
            sizes[rel] = len(jpeg)
            continue
        if index % shard_samples == 0:
            if shard:
                shard.close()
            shard = tarfile.open(tmp / f"shard-{index // shard_samples:06d}.tar", "w")
        for suffix, payload in (("jpg", jpeg), ("cls", str(label).encode())):
            info = tarfile.TarInfo(f"{index:07d}.{suffix}")
            info.size = len(payload)
            shard.addfile(info, io.BytesIO(payload))
    if shard:
        shard.close()
        sizes = {p.name: p.stat().st_size for p in sorted(tmp.glob("*.tar"))}
    manifest = {"hpcbench_data": MANIFEST_VERSION, "format": fmt, "samples": samples, "classes": 10,
                "image_size": image_size, "jpeg_quality": JPEG_QUALITY, "source": "scikit-learn digits, coloured, with grain",
                "files": sizes}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))


def _encode(image_module: Any, digit: np.ndarray, size: int, rng: np.random.Generator) -> bytes:
    """One digit (8x8, 0-16) as a coloured size x size JPEG with grain."""
    grey = image_module.fromarray((digit.reshape(8, 8) * (255 / 16)).astype(np.uint8)).resize((size, size),
                                                                                           image_module.BILINEAR)
    ink, paper = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    weight = np.asarray(grey, dtype=np.float32)[..., None] / 255
    pixels = paper * (1 - weight) + ink * weight + rng.normal(0, GRAIN, (size, size, 3))
    buffer = io.BytesIO()
    image_module.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def inspect(data_dir: str | Path, expected: str | None = None, verify: bool = True) -> DataFacts:
    """The folder's format and files, checked with one stat per file (`verify`); a ConfigError naming the folder
    (or the file) and what was expected when it is missing, empty, of another format, or not what its manifest
    lists. Ranks pass verify=False: the check ran once before any process started."""
    root = Path(data_dir)
    if not root.exists():
        raise ConfigError("data-dir", f"{root} does not exist (make one: hpcbench data make --format "
                          f"{'|'.join(FORMATS)} ... {root})")
    if not root.is_dir():
        raise ConfigError("data-dir", f"{root} is not a folder")
    manifest_path = root / MANIFEST
    if manifest_path.exists():
        facts = _from_manifest(root, manifest_path, verify)
    else:
        facts = _scan(root)
    if expected is not None and facts.format != expected:
        raise ConfigError("data-format", f"{root} holds {facts.format}, not {expected}")
    return facts


def _from_manifest(root: Path, path: Path, verify: bool) -> DataFacts:
    try:
        manifest = json.loads(path.read_text())
        fmt, sizes, samples = manifest["format"], dict(manifest["files"]), int(manifest["samples"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError("data-dir", f"{path} is not an hpcbench data manifest ({type(exc).__name__}: {exc})") from None
    if fmt not in FORMATS:
        raise ConfigError("data-dir", f"{path}: format {fmt!r} is not one of: {', '.join(FORMATS)}")
    for rel, size in sizes.items() if verify else ():
        try:
            found = (root / rel).stat().st_size
        except OSError:
            raise ConfigError("data-dir", f"{root / rel} is listed in {MANIFEST} but missing") from None
        if found != size:
            raise ConfigError("data-dir", f"{root / rel} has {found} bytes, {MANIFEST} lists {size} (truncated or replaced)")
    files = sorted(sizes)
    if not files:
        raise ConfigError("data-dir", f"{root} is empty (its {MANIFEST} lists no files)")
    labels = [int(rel.split("/")[0]) for rel in files] if fmt == "jpeg-folder" else None
    return DataFacts(root=str(root), format=fmt, samples=samples, classes=int(manifest.get("classes", 10)),
                     files=files, bytes=sum(sizes.values()), labels=labels)


def _scan(root: Path) -> DataFacts:
    """A folder without a manifest (a site's own ImageFolder or shards): its layout decides the format."""
    shards = sorted(p.name for p in root.glob("*.tar"))
    if shards:
        samples = 0
        for name in shards:  # a member count is the only way to know a shard's samples without a manifest
            with _open_tar(root / name) as tar:
                samples += sum(1 for m in tar if m.name.endswith(IMAGE_SUFFIXES))
        return DataFacts(root=str(root), format="tar-shards", samples=samples, classes=0, files=shards,
                         bytes=sum((root / s).stat().st_size for s in shards))
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    files, labels, total = [], [], 0
    for label, name in enumerate(classes):
        for entry in sorted(os.scandir(root / name), key=lambda e: e.name):
            if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES):
                files.append(f"{name}/{entry.name}")
                labels.append(label)
                total += entry.stat().st_size
    if not files:
        found = sorted(p.name for p in root.iterdir())[:5]
        what = f"found {', '.join(found)}" if found else "it is empty"
        raise ConfigError("data-dir", f"{root} holds neither {FORMATS[0]} (<class>/<name>.jpg) nor {FORMATS[1]} "
                          f"(*.tar): {what}")
    return DataFacts(root=str(root), format="jpeg-folder", samples=len(files), classes=len(classes), files=files,
                     bytes=total, labels=labels)


STREAM_BUFFER = 2**20
"""Bytes per read of a shard: tarfile's stream mode alone reads 10 KiB at a time, one round trip each on a
network mount."""


@contextlib.contextmanager
def _open_tar(path: Path) -> Iterator[tarfile.TarFile]:
    """A shard as a stream: one sequential read front to back, as WebDataset reads a shard."""
    try:
        with open(path, "rb", buffering=STREAM_BUFFER) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            yield tar
    except tarfile.TarError as exc:
        raise DataFileError(f"{path}: not a readable tar shard ({exc})") from None
    except OSError as exc:  # the storage itself: a mount gone, a disk error
        raise DataFileError(f"{path}: {exc}") from None


def decode(data: bytes, name: str) -> torch.Tensor:
    """JPEG bytes -> uint8 [3, H, W] (libjpeg-turbo); a corrupt file raises naming it."""
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError) as exc:
        raise DataFileError(f"{name}: not a decodable JPEG ({str(exc).splitlines()[0]})") from None


Transform = Callable[[torch.Tensor], torch.Tensor]


class FolderImages(Dataset):
    """jpeg-folder, map-style: each item is one file read from storage, decoded, transformed."""

    def __init__(self, facts: DataFacts, transform: Transform) -> None:
        assert facts.labels is not None
        self.root, self.files, self.labels, self.transform = facts.root, facts.files, facts.labels, transform

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: int) -> bytes:
        path = os.path.join(self.root, self.files[index])
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise DataFileError(f"{path}: {exc.strerror or exc}") from None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(decode(self.read(index), os.path.join(self.root, self.files[index]))), self.labels[index]


class ShardSamples(IterableDataset):
    """tar-shards, endless: this rank's shards (r, r+R, ...) split over its loader workers, in a new order
    each pass, each shard read as one stream."""

    def __init__(self, facts: DataFacts, transform: Transform, rank: int, world_size: int, seed: int) -> None:
        self.root, self.transform, self.seed = facts.root, transform, seed
        self.shards = facts.files[rank::world_size]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        worker = get_worker_info()
        mine = self.shards[worker.id::worker.num_workers] if worker else self.shards
        order = random.Random(self.seed + (worker.id if worker else 0))
        while True:
            order.shuffle(mine)
            found = 0
            for name in mine:
                for key, data, label in shard_members(os.path.join(self.root, name)):
                    found += 1
                    yield self.transform(decode(data, key)), label
            if not found:  # a pass over nothing would spin here forever
                raise DataFileError(f"{self.root}: shards {', '.join(mine) or '(none)'} hold no samples")


def shard_members(path: str) -> Iterator[tuple[str, bytes, int]]:
    """(shard:member, JPEG bytes, class) for each sample of one shard, read front to back."""
    pending: dict[str, dict[str, bytes]] = {}
    try:
        with _open_tar(Path(path)) as tar:
            for member in tar:
                stem, _, suffix = member.name.rpartition(".")
                handle = tar.extractfile(member)
                if handle is None:
                    continue
                pending.setdefault(stem, {})[suffix] = handle.read()
                sample = pending[stem]
                if "cls" in sample and any(s in sample for s in ("jpg", "jpeg")):
                    del pending[stem]
                    yield f"{path}:{stem}", sample.get("jpg", sample.get("jpeg", b"")), int(sample["cls"])
    except (OSError, tarfile.TarError, ValueError) as exc:
        raise DataFileError(f"{path}: {exc}") from None


class CachedImages(Dataset):
    """Samples whose bytes were read once into memory (DS-Analyzer's cached run): decode and augmentation
    still run per item, fetching does not."""

    def __init__(self, samples: list[tuple[str, bytes, int]], transform: Transform) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        name, data, label = self.samples[index]
        return self.transform(decode(data, name)), label


def cache_samples(facts: DataFacts, count: int, rank: int, world_size: int, seed: int) -> list[tuple[str, bytes, int]]:
    """The first `count` samples of this rank's part, read into memory (name, bytes, class)."""
    found: list[tuple[str, bytes, int]] = []
    if facts.format == "jpeg-folder":
        assert facts.labels is not None
        indices = list(range(rank, len(facts.files), world_size))
        random.Random(seed).shuffle(indices)
        for index in indices[:count]:
            path = os.path.join(facts.root, facts.files[index])
            found.append((path, Path(path).read_bytes(), facts.labels[index]))
        return found
    for name in facts.files[rank::world_size]:
        for sample in shard_members(os.path.join(facts.root, name)):
            found.append(sample)
            if len(found) >= count:
                return found
    return found
