"""Recurrent language model: an LSTM (or GRU) predicting the next token of each sequence.

Recurrent steps run one after another, so per-step latency, not arithmetic, bounds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hpcbench.errors import check_at_least, check_choice
from hpcbench.workloads.base import register
from hpcbench.workloads.text import ByteLanguageModel

CELLS = ("lstm", "gru")
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


@register
class Rnn(ByteLanguageModel):
    name = "rnn"
    description = "LSTM/GRU next-token language model on token sequences"
    sample_unit = "token sequence (seq_len tokens)"
    default_batch_size = 32
    Options = RnnOptions
    precisions = ("fp32", "tf32", "fp16")  # oneDNN has no bf16 LSTM on CPU
    target_why = TARGET_WHY

    def build_model(self, options: RnnOptions) -> nn.Module:
        return LanguageModel(options)

    def optimizer(self, params: Any, options: RnnOptions) -> torch.optim.Optimizer:
        """Adam, as character-level LSTMs train: SGD at 0.01 left the bundled text at 4.3 bits after 400 steps."""
        return torch.optim.Adam(params, lr=2e-3)
