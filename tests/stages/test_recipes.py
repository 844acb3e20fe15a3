"""Every recipe in recipes/ that `stepwiser run` takes loads: its steps, options (names checked against each
subcommand's options), variables and outputs resolve, and its steps' inputs come from earlier steps or
exist in the repository."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stepwiser.cli.run import resolve_command
from stepwiser.stages.run_recipe import load_plan, step_needs

RECIPES = sorted(p for p in (Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml")
                 if "steps" in (yaml.safe_load(p.read_text()) or {}))


def test_there_are_run_recipes():
    assert {p.name for p in RECIPES} >= {"quickstart.yaml", "micro.yaml"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_loads_and_every_step_checks(path, tmp_path):
    plan = load_plan(str(path), [f"run.out={tmp_path / 'out'}"], resolve_command)
    assert plan.steps and len({s.name for s in plan.steps}) == len(plan.steps)
    needs = step_needs(plan.steps)
    assert all(needs[s.name] <= {t.name for t in plan.steps[:i]} for i, s in enumerate(plan.steps))
    for s in plan.steps:
        assert s.outputs, f"{s.name} declares no output: under --jobs every later step would wait for it"
