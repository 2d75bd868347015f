from hpcbench.engines.discovery import Placement, discover

import pytest


def test_torchrun_variables_give_the_placement():
    env = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "2"}
    assert discover(env) == Placement(rank=3, local_rank=1, world_size=8, local_world_size=2, launcher="torchrun")


def test_no_launcher_is_a_single_process():
    assert discover({}) == Placement(rank=0, local_rank=0, world_size=1, local_world_size=1, launcher="none")


def test_incomplete_launcher_environment_is_an_error_naming_the_launcher():
    with pytest.raises(RuntimeError, match="torchrun"):
        discover({"RANK": "0", "WORLD_SIZE": "2"})
