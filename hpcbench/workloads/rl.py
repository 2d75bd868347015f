"""Reinforcement learning: a REINFORCE policy-gradient agent on vectorised CartPole (gymnasium).

Here the environment, not the accelerator, produces the data: each rank plays its own episodes
with the current policy, then one policy-gradient step is taken (the engine averages gradients).
A sample is one environment step, so samples/s is environment steps per second.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from hpcbench.errors import ConfigError, check_at_least
from hpcbench.workloads.base import Batch, DataContext, Quality, Workload, register

ENV_ID = "CartPole-v1"
OBSERVATION_SIZE, NUM_ACTIONS = 4, 2
RETURN_WINDOW = 20
"""mean_episode_return averages each rank's last this-many finished episodes."""
SOLVED = Quality(metric="mean_return_last_100", higher_is_better=True, low=0.0, high=500.0, target=475.0, min_count=100,
                 why="CartPole-v1 is solved at a mean return >= 475 over the last 100 episodes (gymnasium's "
                     "reward_threshold; v0's was 195 at a 200-step horizon)")


@dataclass(kw_only=True)
class RlOptions:
    num_envs: int = 8
    """CartPole environments stepped together on each rank (batch-size / num-envs steps each per update)."""
    hidden_size: int = 128
    """Width of the policy network's hidden layer."""
    gamma: float = 0.99
    """Discount factor for returns."""

    def __post_init__(self) -> None:
        check_at_least("num-envs", self.num_envs, 1)
        check_at_least("hidden-size", self.hidden_size, 1)
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError("gamma", f"must be in (0, 1], got {self.gamma}")


class Rollouts(Iterator[Batch]):
    """Plays batch_size environment steps per update with the current policy; tracks episode returns."""

    def __init__(self, options: RlOptions, ctx: DataContext) -> None:
        import gymnasium as gym

        self.env = gym.make_vec(
            ENV_ID, num_envs=options.num_envs, vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},  # every step is a real transition
        )
        observations, _ = self.env.reset(seed=ctx.seed + 1000 * ctx.rank)
        self.observations = torch.as_tensor(observations)
        self.policy, self.device, self.gamma = ctx.model, ctx.device, options.gamma
        self.steps_per_env = ctx.batch_size // options.num_envs
        self.generator = torch.Generator().manual_seed(ctx.seed + ctx.rank)
        self.running_returns = torch.zeros(options.num_envs)
        self.finished_returns: deque[float] = deque(maxlen=RETURN_WINDOW)
        # Each rank keeps its share of the job's last SOLVED.min_count episodes; the ranks' shares add up.
        self.recent_returns: deque[float] = deque(maxlen=-(-SOLVED.min_count // ctx.world_size))

    def __next__(self) -> Batch:
        observations, actions, rewards, dones = [], [], [], []
        with torch.no_grad():
            for _ in range(self.steps_per_env):
                probs = F.softmax(self.policy(self.observations.to(self.device)), dim=-1).cpu()
                action = torch.multinomial(probs, 1, generator=self.generator).squeeze(1)
                next_obs, reward, terminated, truncated, _ = self.env.step(action.numpy())
                done = torch.as_tensor(terminated | truncated)
                reward = torch.as_tensor(reward, dtype=torch.float32)
                observations.append(self.observations)
                actions.append(action)
                rewards.append(reward)
                dones.append(done)
                self.running_returns += reward
                self.finished_returns.extend(self.running_returns[done].tolist())
                self.recent_returns.extend(self.running_returns[done].tolist())
                self.running_returns[done] = 0.0
                self.observations = torch.as_tensor(next_obs)
        returns = discounted_returns(torch.stack(rewards), torch.stack(dones), self.gamma)
        advantages = (returns - returns.mean()) / (returns.std() + 1e-8)  # normalised: a simple baseline
        batch = (torch.cat(observations), (torch.cat(actions), advantages.flatten()))
        return batch[0].to(self.device), (batch[1][0].to(self.device), batch[1][1].to(self.device))


def discounted_returns(rewards: torch.Tensor, dones: torch.Tensor, gamma: float) -> torch.Tensor:
    """Return from each (step, env) to its episode's end or the rollout's end; rewards[t, env]."""
    returns = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[1])
    for t in reversed(range(rewards.shape[0])):
        running = rewards[t] + gamma * running * (~dones[t]).float()
        returns[t] = running
    return returns


@register
class Rl(Workload):
    name = "rl"
    description = "REINFORCE policy-gradient agent on vectorised CartPole (environment-bound)"
    sample_unit = "environment step"
    default_batch_size = 512
    real_data = "none: the CartPole environment is the data source"
    Options = RlOptions
    precisions = ("fp32",)  # a 4-in, 2-out policy: the environment, not its arithmetic, bounds a step
    compilable = False
    tta_data = "synthetic"  # the environment
    eval_every_steps = 5

    def __init__(self) -> None:
        self.rollouts: Rollouts | None = None

    def check_run(self, options: RlOptions, batch_size: int, data: str, data_dir: str | None) -> None:
        if data != "synthetic":
            raise ConfigError("data", "rl takes its data from the environment; only 'synthetic' applies")
        if batch_size % options.num_envs:
            raise ConfigError("batch-size", f"must be a multiple of --num-envs ({options.num_envs}), got {batch_size}")

    def build_model(self, options: RlOptions) -> nn.Module:
        return nn.Sequential(nn.Linear(OBSERVATION_SIZE, options.hidden_size), nn.ReLU(), nn.Linear(options.hidden_size, NUM_ACTIONS))

    def batches(self, options: RlOptions, ctx: DataContext) -> Iterator[Batch]:
        self.rollouts = Rollouts(options, ctx)
        return self.rollouts

    def synthetic_batch(self, options: RlOptions, batch_size: int, generator: torch.Generator) -> Batch:
        """Shapes for FLOP counting only; training data always comes from the environment."""
        observations = torch.randn(batch_size, OBSERVATION_SIZE, generator=generator)
        actions = torch.randint(0, NUM_ACTIONS, (batch_size,), generator=generator)
        return observations, (actions, torch.randn(batch_size, generator=generator))

    def loss(self, output: torch.Tensor, targets: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """REINFORCE: raise the log-probability of actions in proportion to their advantage."""
        actions, advantages = targets
        log_probs = F.log_softmax(output, dim=-1).gather(1, actions.unsqueeze(1)).squeeze(1)
        return -(log_probs * advantages).mean()

    def optimizer(self, params: Any, options: RlOptions) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=1e-2)

    def quality(self, options: RlOptions, data: str) -> Quality | None:
        return SOLVED

    def heldout_score(self, options: RlOptions, ctx: DataContext, model: nn.Module) -> tuple[float, int]:
        """Not held out: reinforcement learning is judged on the episodes it plays (gymnasium's criterion)."""
        recent = list(self.rollouts.recent_returns) if self.rollouts else []
        return float(sum(recent)), len(recent)

    def extra_metrics(self) -> dict[str, Any]:
        finished = list(self.rollouts.finished_returns) if self.rollouts else []
        return {"mean_episode_return": sum(finished) / len(finished) if finished else None}
