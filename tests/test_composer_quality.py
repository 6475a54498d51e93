"""The benchmark suite's own logic (its runs take hours and are not part of the tests)."""

from __future__ import annotations

import importlib.util
import math
import sys

import pytest
import yaml

from musicid.params import SECTIONS, parse_section
from tests.conftest import PROJECT_ROOT

spec = importlib.util.spec_from_file_location("composer_quality", PROJECT_ROOT / "benchmarks" / "composer_quality.py")
suite = importlib.util.module_from_spec(spec)
sys.modules["composer_quality"] = suite  # its dataclasses look their module up there
spec.loader.exec_module(suite)
PARAMS = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())


def test_every_built_in_configuration_gives_valid_params():
    for name, overrides in suite.CONFIGS.items():
        params = suite.apply(PARAMS, overrides)
        for section in SECTIONS:
            parse_section(params[section], section, source=f"configuration {name}")
    assert PARAMS["train"]["epochs"] != 99 and suite.apply(PARAMS, {"train.epochs": 99})["train"]["epochs"] == 99
    assert PARAMS["train"]["epochs"] == yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["train"]["epochs"]
    assert suite.apply(PARAMS, {"render.augment.copies": 2})["render"]["augment"]["copies"] == 2
    with pytest.raises(SystemExit, match="no param render.augment.colour"):
        suite.apply(PARAMS, {"render.augment.colour": 1})


def test_configurations_from_the_command_line():
    assert suite.parse_config("wide:train.channels=[32, 64],train.lr=0.001") == (
        "wide", {"train.channels": [32, 64], "train.lr": 0.001})
    assert suite.parse_config("default") == ("default", suite.CONFIGS["default"])
    with pytest.raises(SystemExit, match="unknown configuration"):
        suite.parse_config("nope")
    with pytest.raises(SystemExit, match="is not section.key=value"):
        suite.parse_config("bad:epochs=3")
    with pytest.raises(SystemExit, match="no param train.epoch"):
        suite.apply(PARAMS, {"train.epoch": 3})


def test_mean_and_sample_sd():
    assert suite.mean_sd([0.5, 0.7, 0.9]) == pytest.approx((0.7, 0.2))
    mean, sd = suite.mean_sd([0.8])
    assert mean == 0.8 and math.isnan(sd)


def test_a_configuration_can_change_what_a_task_renders_with():
    quartets = suite.TASKS["quartets"]
    assert suite.task_params(quartets, PARAMS, {})["render"]["program"] == 40  # the task's one violin
    assert suite.task_params(quartets, PARAMS, suite.CONFIGS["instruments"])["render"]["program"] is None
    assert suite.task_params(suite.TASKS["default-piano"], PARAMS, {})["render"]["program"] == 0
    # The base params are left as they were.
    assert PARAMS["render"]["program"] is None
