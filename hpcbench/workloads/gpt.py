"""GPT: a decoder-only transformer language model, what GPU clusters train today (nanoGPT's shape).

Pre-norm blocks of causal self-attention (torch's scaled_dot_product_attention) and an MLP, the
token embedding tied to the output head. A small default trains on a CPU in seconds; `--preset`
names GPT-2's shapes for GPUs. FLOPs per token by the PaLM form (appendix B), as nanoGPT's
`estimate_mfu` and torchtitan count them: 6N + 12·L·H·Q·T, N without the position embeddings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from hpcbench.errors import ConfigError, check_at_least, check_choice
from hpcbench.workloads.base import ModelSplit, register
from hpcbench.workloads.text import ByteLanguageModel

PRESETS = {"gpt2-124m": {"layers": 12, "heads": 12, "embed": 768, "seq_len": 1024, "vocab_size": 50304},
           "gpt2-350m": {"layers": 24, "heads": 16, "embed": 1024, "seq_len": 1024, "vocab_size": 50304}}
"""GPT-2 small and medium (Radford et al. 2019, table 2); vocabulary padded to 50304 as nanoGPT pads it."""
TARGET_WHY = ("2.5 bits per byte on the held-out tenth, the rnn's target: well under the ~4.5 bits of single-byte "
              "frequencies; the default gpt passes it in ~600 steps at batch 16 on the bundled text (measured)")


@dataclass(kw_only=True)
class GptOptions:
    preset: str | None = None
    """GPT-2 shape: gpt2-124m or gpt2-350m (sets layers, heads, embed, seq-len, vocab-size)"""
    layers: int = 2
    """Transformer blocks."""
    heads: int = 4
    """Attention heads per block."""
    embed: int = 128
    """Model width (heads x head size)."""
    seq_len: int = 64
    """Tokens per training sequence."""
    vocab_size: int = 256
    """Tokens in the vocabulary (256 reads text as bytes)."""

    def __post_init__(self) -> None:
        if self.preset is not None:
            check_choice("preset", self.preset, tuple(PRESETS))
            for name, value in PRESETS[self.preset].items():
                setattr(self, name, value)
        for flag, value in (("layers", self.layers), ("heads", self.heads), ("embed", self.embed),
                            ("seq-len", self.seq_len), ("vocab-size", self.vocab_size)):
            check_at_least(flag, value, 1)
        if self.embed % self.heads:
            raise ConfigError("embed", f"{self.embed} is not a multiple of --heads {self.heads}")


class Attention(nn.Module):
    """Causal self-attention. q, k and v are separate projections, so tensor parallelism splits each by heads
    (a fused qkv split by rows would hand a rank q and half of k); the view counts local heads (-1)."""

    def __init__(self, options: GptOptions) -> None:
        super().__init__()
        self.head_size = options.embed // options.heads
        self.q, self.k, self.v = (nn.Linear(options.embed, options.embed) for _ in range(3))
        self.proj = nn.Linear(options.embed, options.embed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        q, k, v = (proj(x).view(batch, length, -1, self.head_size).transpose(1, 2) for proj in (self.q, self.k, self.v))
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(attended.transpose(1, 2).reshape(batch, length, -1))


class Block(nn.Module):
    def __init__(self, options: GptOptions) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(options.embed), nn.LayerNorm(options.embed)
        self.attn = Attention(options)
        self.mlp = nn.Sequential(nn.Linear(options.embed, 4 * options.embed), nn.GELU(), nn.Linear(4 * options.embed, options.embed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Embed(nn.Module):
    """Token plus position embeddings: the first pipeline stage's own layer."""

    def __init__(self, options: GptOptions) -> None:
        super().__init__()
        self.tokens = nn.Embedding(options.vocab_size, options.embed)
        self.positions = nn.Embedding(options.seq_len, options.embed)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.tokens(tokens) + self.positions(torch.arange(tokens.shape[1], device=tokens.device))


class Gpt(nn.Module):
    def __init__(self, options: GptOptions) -> None:
        super().__init__()
        self.embed = Embed(options)
        self.blocks = nn.ModuleList(Block(options) for _ in range(options.layers))
        self.norm = nn.LayerNorm(options.embed)
        self.head = nn.Linear(options.embed, options.vocab_size, bias=False)
        self.head.weight = self.embed.tokens.weight  # tied, as GPT-2
        for name, param in self.named_parameters():  # GPT-2's init (nanoGPT's): N(0, 0.02), residual projections
            if name.endswith("bias"):                # scaled by 1/sqrt(2L); without it the tied head starts at ~90 nats
                nn.init.zeros_(param)
            elif param.dim() > 1:
                residual = name.endswith(("proj.weight", "mlp.2.weight"))
                nn.init.normal_(param, std=0.02 / math.sqrt(2 * options.layers) if residual else 0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))  # (batch, seq_len, vocab) logits for the next token


def model_split(options: GptOptions) -> ModelSplit:
    """Megatron's split of every block (q, k, v and the MLP's first layer by columns, the projections after them
    by rows: one all-reduce each for attention and MLP), sequence parallel around them; pipeline stages of whole
    blocks, the embedding on the first, the final norm and the (tied) head on the last."""
    blocks = "blocks.*"
    return ModelSplit(
        tensor={f"{blocks}.attn": "input", f"{blocks}.attn.q": "colwise", f"{blocks}.attn.k": "colwise",
                f"{blocks}.attn.v": "colwise", f"{blocks}.attn.proj": "rowwise",
                f"{blocks}.mlp": "input", f"{blocks}.mlp.0": "colwise", f"{blocks}.mlp.2": "rowwise"},
        sequence={"blocks.0": "scatter", f"{blocks}.norm1": "norm", f"{blocks}.norm2": "norm", "norm": "end"},
        tensor_divides={"heads": options.heads, "embed": options.embed},
        sequence_divides={"seq-len": options.seq_len},
        first=["embed"], blocks=[[f"blocks.{i}"] for i in range(options.layers)], last=["norm", "head"],
        blocks_flag=f"--layers {options.layers}",
        # per block, forward and backward: attention and MLP one all-reduce each way; sequence parallel turns each
        # into an all-gather and a reduce-scatter, adds the norms' weight gradients (summed over sequence shards)
        # and one all-gather at each end (the final norm's input forward, the first block's input gradient)
        megatron={"all_reduce": 4 * options.layers},
        megatron_sequence={"all_gather": 4 * options.layers + 2, "reduce_scatter": 4 * options.layers,
                           "all_reduce": 4 * options.layers},
    )


def parameters_without_positions(options: GptOptions) -> int:
    """N of this architecture: per block qkv, proj, MLP and two layer norms (12E^2 + 13E), the (tied) token
    embedding, the final norm."""
    width = options.embed
    return options.layers * (12 * width**2 + 13 * width) + options.vocab_size * width + 2 * width


def palm_flops_per_token(options: GptOptions) -> float:
    """6N + 12·L·H·Q·T (PaLM, appendix B; nanoGPT's estimate_mfu), N without the position embeddings.
    llm.c's 6N + 6·L·C·T counts half the attention term."""
    return 6 * parameters_without_positions(options) + 12 * options.layers * options.embed * options.seq_len


@register
class GptWorkload(ByteLanguageModel):
    name = "gpt"
    description = "decoder-only transformer language model (GPT-2 shape, causal SDPA, tied embeddings)"
    sample_unit = "token sequence (seq_len tokens)"
    default_batch_size = 16
    Options = GptOptions
    eval_every_steps = 50
    target_why = TARGET_WHY

    def build_model(self, options: GptOptions) -> nn.Module:
        return Gpt(options)

    def model_split(self, options: GptOptions) -> ModelSplit:
        return model_split(options)

    def optimizer(self, params: Any, options: GptOptions) -> torch.optim.Optimizer:
        """AdamW at nanoGPT's small-model rate (shakespeare_char: 1e-3)."""
        return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.1)

    def describe(self, options: GptOptions) -> dict[str, Any]:
        """FLOPs per sample by the PaLM form, so MFU reads as nanoGPT's and torchtitan's (the counter's,
        replaced, leaves out the biases and norms: 0.8 % less at the default shape, 0.08 % at GPT-2 124M)."""
        return {"tokens_per_sample": options.seq_len, "flops_per_sample": palm_flops_per_token(options) * options.seq_len,
                "flops_formula": "PaLM 6N + 12*L*H*Q*T per token, N without position embeddings (nanoGPT, torchtitan)"}
