"""Workload facts the records carry, RL learning, and fine-tuning weights."""

import pytest
import torch

from conftest import cli_in_process, run_cli
from hpcbench.runner import flops_per_sample
from hpcbench.workloads import get_workload, registry
from hpcbench.workloads.rl import discounted_returns


def test_mlp_flops_match_the_hand_count():
    workload = get_workload("mlp")
    options = workload.options({"hidden_size": 16, "num_hidden_layers": 1})
    forward = 2 * 784 * 16 + 2 * 16 * 10
    # backward: weight gradients of both layers, input gradient of the second only (images need none)
    backward = 2 * 784 * 16 + 2 * 16 * 10 + 2 * 16 * 10
    assert flops_per_sample(workload, options) == forward + backward


def test_recurrent_models_get_no_flop_count_rather_than_a_partial_one():
    workload = get_workload("rnn")
    options = workload.options({"vocab_size": 50, "seq_len": 4, "hidden_size": 8, "embedding_size": 8})
    assert flops_per_sample(workload, options) is None


def test_every_workload_describes_itself():
    for name, cls in registry().items():
        assert cls.description and cls.sample_unit and cls.real_data and cls.default_batch_size > 0, name


def test_list_prints_every_workload():
    result = run_cli("list", timeout=60)
    assert result.returncode == 0
    assert [line.split()[0] for line in result.stdout.splitlines() if not line.startswith(" ")] == sorted(registry())


def test_discounted_returns_reset_at_episode_ends():
    rewards = torch.ones(3, 1)
    dones = torch.tensor([[False], [True], [False]])
    assert discounted_returns(rewards, dones, gamma=0.5).flatten().tolist() == [1.5, 1.0, 1.0]


def test_finetune_freezes_the_backbone():
    workload = get_workload("finetune")
    cnn = get_workload("cnn")
    frozen = workload.build_model(workload.options({"trainable_blocks": 0}))
    trainable = sum(p.numel() for p in frozen.parameters() if p.requires_grad)
    assert trainable == 512 * 10 + 10  # only the new head
    full = cnn.build_model(cnn.options({}))
    assert sum(p.numel() for p in full.parameters() if p.requires_grad) > 1000 * trainable


def test_finetune_loads_weights_and_says_so(tmp_path, out_dir):
    from torchvision import models

    weights = tmp_path / "resnet18.pth"
    source = models.resnet18()
    torch.save(source.state_dict(), weights)
    workload = get_workload("finetune")
    options = workload.options({"weights": str(weights)})
    model = workload.build_model(options)
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert workload.describe(options)["weights"] == str(weights)


@pytest.mark.parametrize(("content", "expected"), [(None, "is not a file"), (b"not a checkpoint", "is not a torch checkpoint")])
def test_bad_weights_are_a_one_line_error(tmp_path, out_dir, content, expected):
    path = tmp_path / "weights.pth"
    if content is not None:
        path.write_bytes(content)
    result = cli_in_process("run", "--workload", "finetune", "--weights", str(path), "--out", str(out_dir))
    assert result.returncode == 2
    assert f"weights: '{path}' {expected}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(out_dir.iterdir()) == []
