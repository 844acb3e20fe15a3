"""`--bf16/--no-bf16`: a recipe's `bf16` stays unless a flag overrides it (AVX2-only CPUs need fp32)."""
from pathlib import Path

import pytest
from click.testing import CliRunner

from stepwiser.cli import cli

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "micro-policy.yaml"


@pytest.fixture
def recipe(tmp_path):
    """The micro-policy recipe with `bf16: true` (as a recipe for a CPU with AMX would have it)."""
    text = RECIPE.read_text().replace("bf16: false", "bf16: true")
    assert "bf16: true" in text
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("flags, want", [([], True), (["--no-bf16"], False), (["--bf16"], True)])
def test_no_bf16_overrides_the_recipe(monkeypatch, tmp_path, recipe, flags, want):
    import stepwiser.stages.train_policy as stage

    seen = {}
    monkeypatch.setattr(stage, "load_conversations", lambda path: [])
    monkeypatch.setattr(stage, "train_sft", lambda cfg, examples, **kw: seen.setdefault("cfg", cfg) and tmp_path)
    res = CliRunner().invoke(cli, ["train-policy", "--config", str(recipe), "-o", str(tmp_path / "o"), *flags])
    assert res.exit_code == 0, res.output
    assert seen["cfg"].bf16 is want and seen["cfg"].lr == 2e-3   # the rest of the recipe is kept
