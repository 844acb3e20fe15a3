"""One source for every option: each stage command's options are generated from its config dataclass
(same names, same defaults, both ways), and `--config FILE.yaml` gives values that flags override."""
from __future__ import annotations

import dataclasses

import click
import pytest

from stepwiser.cli import SUBCOMMANDS, cli
from stepwiser.cli.options import cli_fields, config_options, option_name
from stepwiser.io.config import field_default, option

# options that are not config fields: engines (their own dataclass), the run switches
NOT_FIELDS = {"config_file", "overwrite", "help"}


def _commands():
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        subs = cmd.commands.values() if isinstance(cmd, click.Group) else [cmd]
        for sub in subs:
            yield f"{name} {sub.name}" if isinstance(cmd, click.Group) else name, sub


def _config_of(cmd):
    return getattr(cmd.callback, "stepwiser_config", None)


def test_stage_commands_are_generated_from_their_config():
    generated = {name: _config_of(cmd) for name, cmd in _commands()}
    assert generated["sample"] is not None
    for name, spec in generated.items():
        if spec is None:
            continue
        cls, _ = spec
        cmd = dict(_commands())[name]
        opts = {p.name: p for p in cmd.params if isinstance(p, click.Option)}
        for f in cli_fields(cls):
            assert f.name in opts, f"{name}: field {f.name} has no option"
            assert opts[f.name].default is None, f"{name}: --{f.name} must take its default from the config"
            assert option_name(f) in opts[f.name].opts, f"{name}: {f.name} is not {option_name(f)}"
        extra = {n for n in opts if n not in {f.name for f in cli_fields(cls)} and n not in NOT_FIELDS
                 and not n.endswith(("engine", "base_url", "tokenizer", "batch_size", "device", "dtype",
                                     "tensor_parallel_size", "data_parallel_size", "gpu_memory_utilization",
                                     "enforce_eager", "concurrency"))}
        assert not extra, f"{name}: options without a config field: {sorted(extra)}"


def test_every_listed_subcommand_exists():
    ctx = click.Context(cli)
    listed = cli.list_commands(ctx)
    assert listed and all(cli.get_command(ctx, n) is not None for n in listed)
    assert set(listed) <= set(SUBCOMMANDS)


@dataclasses.dataclass
class Toy:
    name: str = option(help="A name.")
    n: int = option(3, "Count.")
    flag: bool = option(False, "A switch.")
    tags: list[str] = option(["a"], "Tags.")
    mode: str = option("x", "Mode.", choices=("x", "y"))


@click.command()
@config_options(Toy, section="toy")
def toy(cfg):
    click.echo(repr(cfg))


def run(args):
    from click.testing import CliRunner
    return CliRunner().invoke(toy, args)


def test_defaults_file_and_flags_in_order(tmp_path):
    r = run(["--name", "a"])
    assert r.exit_code == 0, r.output
    assert "Toy(name='a', n=3, flag=False, tags=['a'], mode='x')" in r.output
    f = tmp_path / "c.yaml"
    f.write_text("toy:\n  name: b\n  n: 5\n  flag: true\n  tags: [p, q]\n")
    assert "Toy(name='b', n=5, flag=True, tags=['p', 'q'], mode='x')" in run(["--config", str(f)]).output
    r = run(["--config", str(f), "--n", "7", "--no-flag", "--tags", "u,v", "--tags", "w"])
    assert "Toy(name='b', n=7, flag=False, tags=['u', 'v', 'w'], mode='x')" in r.output


def test_file_keys_may_use_dashes_and_unknown_keys_name_the_allowed(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("name: b\nmode: y\n")
    assert "mode='y'" in run(["--config", str(f)]).output
    f.write_text("name: b\nbogus: 1\n")
    r = run(["--config", str(f)])
    assert r.exit_code == 2 and "unknown key(s) bogus" in r.output and "allowed:" in r.output


def test_missing_required_and_bad_choice_are_usage_errors():
    r = run([])
    assert r.exit_code == 2 and "missing required key(s) name" in r.output
    r = run(["--name", "a", "--mode", "z"])
    assert r.exit_code == 2 and "'z' is not one of 'x', 'y'" in r.output


def test_help_shows_the_dataclass_default():
    r = run(["--help"])
    assert "[default: 3]" in r.output and "[required]" in r.output and "[default: off]" in r.output


def test_field_default_of_a_list_is_a_fresh_copy():
    f = {f.name: f for f in dataclasses.fields(Toy)}["tags"]
    a, b = field_default(f), field_default(f)
    assert a == ["a"] and a is not b


@pytest.mark.parametrize("cmd", ["sample"])
def test_help_works_without_a_model(cmd):
    from click.testing import CliRunner
    r = CliRunner().invoke(cli, [cmd, "--help"])
    assert r.exit_code == 0 and "--config" in r.output
