"""Byte-level text for the language models (rnn, gpt): the data, the held-out split, the loss and the
bits-per-byte score they share; each model's file keeps its network, its optimizer and its target's reason."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from hpcbench.errors import ConfigError
from hpcbench.workloads.base import Batch, Quality, Workload

BYTE_VOCABULARY = 256
"""Real text is read character-level as UTF-8 bytes."""
HELDOUT_SHARE = 0.1
"""The text's last tenth is held out (a contiguous split, as character-level language models use)."""
TARGET_BITS_PER_BYTE = 2.5


class TextWindows(Dataset):
    """Non-overlapping windows of seq_len + 1 bytes: input = first seq_len, target = shifted by one."""

    def __init__(self, tokens: torch.Tensor, seq_len: int) -> None:
        self.tokens = tokens
        self.seq_len = seq_len

    def __len__(self) -> int:
        return (len(self.tokens) - 1) // self.seq_len

    def __getitem__(self, index: int) -> Batch:
        window = self.tokens[index * self.seq_len : (index + 1) * self.seq_len + 1]
        return window[:-1], window[1:]


def bundled_text() -> torch.Tensor:
    """CPython's pydoc help topics (`pydoc_data.topics`: 79 topics, ~466 KB of English on 3.11), shipped with
    every CPython, so the rnn has real text offline. Its size and content follow the Python version."""
    from pydoc_data.topics import topics

    data = "".join(topics[name] for name in sorted(topics)).encode()
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).long()


def text_split(tokens: torch.Tensor, split: str) -> torch.Tensor:
    cut = int(len(tokens) * (1 - HELDOUT_SHARE))
    return tokens[:cut] if split == "train" else tokens[cut:]


def read_text(data_dir: str) -> torch.Tensor:
    """Bytes of a text file, or of every *.txt file in a folder (sorted), as token ids."""
    path = Path(data_dir)
    files = [path] if path.is_file() else sorted(path.glob("*.txt"))
    if not files:
        raise ConfigError("data-dir", f"{data_dir!r} is neither a text file nor a folder with *.txt files")
    data = b"".join(f.read_bytes() for f in files)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).long()


class ByteLanguageModel(Workload):
    """A next-byte language model: options with `vocab_size` and `seq_len`; the model maps (batch, seq_len)
    tokens to (batch, seq_len, vocab) logits. Subclasses say why their target is reachable (`target_why`)."""

    real_data = "byte-level text: a .txt file or a folder of them as --data-dir (the last tenth held out)"
    tta_data = "bundled"
    target_why = ""

    def synthetic_batch(self, options, batch_size: int, generator: torch.Generator) -> Batch:
        tokens = torch.randint(0, options.vocab_size, (batch_size, options.seq_len + 1), generator=generator)
        return tokens[:, :-1], tokens[:, 1:]

    def check_run(self, options, batch_size: int, data: str, data_dir: str | None) -> None:
        if data in ("real", "bundled") and options.vocab_size < BYTE_VOCABULARY:
            raise ConfigError("vocab-size", f"must be >= {BYTE_VOCABULARY} for byte-level text, got {options.vocab_size}")

    def real_dataset(self, options, data_dir: str) -> Dataset:
        return TextWindows(text_split(read_text(data_dir), "train"), options.seq_len)

    def real_heldout_dataset(self, options, data_dir: str) -> Dataset:
        return TextWindows(text_split(read_text(data_dir), "heldout"), options.seq_len)

    def bundled_dataset(self, options, split: str) -> Dataset:
        return TextWindows(text_split(bundled_text(), split), options.seq_len)

    def quality(self, options, data: str) -> Quality | None:
        if data == "synthetic":
            return None
        return Quality(metric="heldout_bits_per_byte", higher_is_better=False, low=0.0,
                       high=math.log2(options.vocab_size), target=TARGET_BITS_PER_BYTE, why=self.target_why)

    def loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output.flatten(0, 1), targets.flatten())

    def score(self, output: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Held-out cross-entropy in bits, summed over the predicted bytes."""
        nats = F.cross_entropy(output.flatten(0, 1), targets.flatten(), reduction="sum")
        return nats / math.log(2), targets.numel()
