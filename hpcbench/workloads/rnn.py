"""Recurrent language model: an LSTM (or GRU) predicting the next token of each sequence.

Recurrent steps run one after another, so per-step latency, not arithmetic, bounds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from hpcbench.errors import ConfigError, check_at_least, check_choice
from hpcbench.workloads.base import Batch, Quality, Workload, register

CELLS = ("lstm", "gru")
BYTE_VOCABULARY = 256
"""Real text is read character-level as UTF-8 bytes."""
HELDOUT_SHARE = 0.1
"""The text's last tenth is held out (a contiguous split, as character-level language models use)."""
TARGET_BITS_PER_BYTE = 2.5
TARGET_WHY = ("2.5 bits per byte: well under the ~4.5 bits of single-character frequencies; the 2-layer LSTM "
              "passes it in ~300 steps at batch 32 on the bundled text (measured)")


@dataclass(kw_only=True)
class RnnOptions:
    cell: str = "lstm"
    """Recurrent cell: lstm or gru."""
    vocab_size: int = 10000
    """Tokens in the vocabulary (at least 256 for --data real, which reads bytes)."""
    seq_len: int = 64
    """Tokens per training sequence."""
    embedding_size: int = 128
    """Token embedding width."""
    hidden_size: int = 256
    """Recurrent state width."""
    num_layers: int = 2
    """Stacked recurrent layers."""

    def __post_init__(self) -> None:
        check_choice("cell", self.cell, CELLS)
        check_at_least("vocab-size", self.vocab_size, 2)
        check_at_least("seq-len", self.seq_len, 1)
        check_at_least("embedding-size", self.embedding_size, 1)
        check_at_least("hidden-size", self.hidden_size, 1)
        check_at_least("num-layers", self.num_layers, 1)


class LanguageModel(nn.Module):
    def __init__(self, options: RnnOptions) -> None:
        super().__init__()
        self.embed = nn.Embedding(options.vocab_size, options.embedding_size)
        recurrent = nn.LSTM if options.cell == "lstm" else nn.GRU
        self.rnn = recurrent(options.embedding_size, options.hidden_size, options.num_layers, batch_first=True)
        self.head = nn.Linear(options.hidden_size, options.vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        states, _ = self.rnn(self.embed(tokens))
        return self.head(states)  # (batch, seq_len, vocab) logits for the next token


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


@register
class Rnn(Workload):
    name = "rnn"
    description = "LSTM/GRU next-token language model on token sequences"
    sample_unit = "token sequence (seq_len tokens)"
    default_batch_size = 32
    real_data = "character-level text: a .txt file or a folder of them as --data-dir (the last tenth held out)"
    Options = RnnOptions
    precisions = ("fp32", "tf32", "fp16")  # oneDNN has no bf16 LSTM on CPU
    tta_data = "bundled"

    def build_model(self, options: RnnOptions) -> nn.Module:
        return LanguageModel(options)

    def synthetic_batch(self, options: RnnOptions, batch_size: int, generator: torch.Generator) -> Batch:
        tokens = torch.randint(0, options.vocab_size, (batch_size, options.seq_len + 1), generator=generator)
        return tokens[:, :-1], tokens[:, 1:]

    def check_run(self, options: RnnOptions, batch_size: int, data: str, data_dir: str | None) -> None:
        if data in ("real", "bundled") and options.vocab_size < BYTE_VOCABULARY:
            raise ConfigError("vocab-size", f"must be >= {BYTE_VOCABULARY} for byte-level text, got {options.vocab_size}")

    def real_dataset(self, options: RnnOptions, data_dir: str) -> Dataset:
        return TextWindows(text_split(read_text(data_dir), "train"), options.seq_len)

    def real_heldout_dataset(self, options: RnnOptions, data_dir: str) -> Dataset:
        return TextWindows(text_split(read_text(data_dir), "heldout"), options.seq_len)

    def bundled_dataset(self, options: RnnOptions, split: str) -> Dataset:
        return TextWindows(text_split(bundled_text(), split), options.seq_len)

    def quality(self, options: RnnOptions, data: str) -> Quality | None:
        if data == "synthetic":
            return None
        return Quality(metric="heldout_bits_per_byte", higher_is_better=False, low=0.0,
                       high=math.log2(options.vocab_size), target=TARGET_BITS_PER_BYTE, why=TARGET_WHY)

    def loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output.flatten(0, 1), targets.flatten())

    def score(self, output: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Held-out cross-entropy in bits, summed over the predicted bytes."""
        nats = F.cross_entropy(output.flatten(0, 1), targets.flatten(), reduction="sum")
        return nats / math.log(2), targets.numel()

    def optimizer(self, params: Any, options: RnnOptions) -> torch.optim.Optimizer:
        """Adam, as character-level LSTMs train: SGD at 0.01 left the bundled text at 4.3 bits after 400 steps."""
        return torch.optim.Adam(params, lr=2e-3)
