"""One source for every option: each stage command's options are generated from its config dataclass
(same names, same defaults, both ways), and `--config FILE.yaml` gives values that flags override."""
from __future__ import annotations

import dataclasses
import json

import click
import pytest

from stepwiser.cli import SUBCOMMANDS, cli
from stepwiser.cli.options import cli_fields, config_options, option_name
from stepwiser.engines import EngineOptions, engine_kwargs
from stepwiser.io.config import field_aliases, field_default, option

# options that are not config fields: the run switches
NOT_FIELDS = {"config_file", "overwrite", "help"}
# stage commands whose options are not generated from a config (none at present)
NO_CONFIG: set[str] = set()


def _commands():
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        subs = cmd.commands.values() if isinstance(cmd, click.Group) else [cmd]
        for sub in subs:
            yield f"{name} {sub.name}" if isinstance(cmd, click.Group) else name, sub


def _config_of(cmd):
    return getattr(cmd.callback, "stepwiser_config", None)


def _engine_params(cmd) -> dict:
    """{parameter name: option flag} of the engine options the command declares (one set per role)."""
    out = {}
    for role in getattr(cmd.callback, "stepwiser_engines", ()):
        for f in cli_fields(EngineOptions):
            flag = option_name(f)
            out[f"{role}_{f.name}" if role else f.name] = f"--{role}-{flag[2:]}" if role else flag
    return out


def test_every_stage_command_is_generated_from_its_config():
    missing = sorted(name for name, cmd in _commands() if _config_of(cmd) is None and name not in NO_CONFIG)
    assert not missing, f"commands without a config dataclass (config_options): {missing}"
    for name in ("sample", "segment", "annotate", "judge-data", "data synth", "data synth-bench", "data load",
                 "eval processbench", "eval accuracy", "eval labels", "report", "export-judge", "report-run"):
        assert _config_of(dict(_commands())[name]) is not None, name


@pytest.mark.parametrize("name", [n for n, _ in _commands()])
def test_options_and_config_fields_match(name):
    cmd = dict(_commands())[name]
    spec = _config_of(cmd)
    if spec is None:
        assert name in NO_CONFIG
        return
    cls, _ = spec
    opts = {p.name: p for p in cmd.params if isinstance(p, click.Option)}
    args = {p.name: p for p in cmd.params if isinstance(p, click.Argument)}
    fields = {f.name: f for f in cli_fields(cls)}
    for f in fields.values():
        if f.name in args:
            continue
        assert f.name in opts, f"{name}: field {f.name} has no option"
        assert opts[f.name].default is None, f"{name}: {option_name(f)} must take its default from the config"
        assert option_name(f) in opts[f.name].opts, f"{name}: {f.name} is not {option_name(f)}"
        assert f.metadata.get("help"), f"{name}: field {f.name} has no help text"
    assert set(args) <= set(fields), f"{name}: arguments without a config field: {sorted(set(args) - set(fields))}"
    engine = _engine_params(cmd)
    for pname, flag in engine.items():
        assert pname in opts and flag in opts[pname].opts and opts[pname].default is None, f"{name}: {flag}"
    aliases = set(field_aliases(cls))   # hidden options of deprecated names
    extra = set(opts) - set(fields) - NOT_FIELDS - set(engine) - aliases
    assert not extra, f"{name}: options without a config field: {sorted(extra)}"


def test_engine_options_keep_their_names_and_defaults():
    cmd = dict(_commands())["sample"]
    opts = {p.name: p for p in cmd.params if isinstance(p, click.Option)}
    for pname, flag in {"tensor_parallel_size": "--tp", "data_parallel_size": "--dp",
                        "gpu_memory_utilization": "--gpu-mem", "base_url": "--base-url"}.items():
        assert flag in opts[pname].opts
    e = EngineOptions()
    assert (e.engine, e.batch_size, e.tensor_parallel_size, e.gpu_memory_utilization, e.concurrency) == \
        ("hf", 64, 1, 0.9, 16)
    assert engine_kwargs({"device": "cpu"}) == {"batch_size": 64, "device": "cpu"}
    assert engine_kwargs(EngineOptions(engine="vllm", tensor_parallel_size=2))["tensor_parallel_size"] == 2
    with pytest.raises(ValueError, match="engine must be one of hf, vllm, openai"):
        EngineOptions(engine="tgi")


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
    assert r.exit_code == 2 and "Missing option(s) --name" in r.output
    r = run(["--name", "a", "--mode", "z"])
    assert r.exit_code == 2 and "'z' is not one of 'x', 'y'" in r.output


def test_help_shows_the_dataclass_default():
    r = run(["--help"])
    assert "[default: 3]" in r.output and "[required]" in r.output and "[default: off]" in r.output


def test_field_default_of_a_list_is_a_fresh_copy():
    f = {f.name: f for f in dataclasses.fields(Toy)}["tags"]
    a, b = field_default(f), field_default(f)
    assert a == ["a"] and a is not b


@pytest.mark.parametrize("name", [n for n, _ in _commands()])
def test_help_works_without_a_model(name):
    from click.testing import CliRunner
    r = CliRunner().invoke(cli, [*name.split(), "--help"])
    assert r.exit_code == 0 and "--config" in r.output


def test_a_stage_command_reads_its_section_of_a_config_file(tmp_path):
    """`data synth --config`: the section may be spelled data_synth or data-synth; flags win over it."""
    from stepwiser.cli import main
    from stepwiser.io.records import Problem, read_records

    f = tmp_path / "c.yaml"
    f.write_text(f"data-synth:\n  n: 3\n  seed: 2\n  out: {tmp_path / 'p.jsonl'}\n  max-steps: 4\n")
    assert main(["data", "synth", "--config", str(f), "--n", "5"]) == 0
    probs = read_records(tmp_path / "p.jsonl", Problem)
    assert len(probs) == 5 and max(p.extra["n_steps"] for p in probs) <= 4


def test_annotate_relabel_and_merge_keep_their_spelling(tmp_path, capsys):
    from fakes import FakeEngine
    from test_annotate_stage import _cfg, _inputs, _rows, policy

    from stepwiser.cli import main
    from stepwiser.stages.annotate import run_annotate

    pp, sp = _inputs(tmp_path, 4)
    run_annotate(_cfg(tmp_path, pp, sp, "all.jsonl"), FakeEngine(policy), progress=False)
    parts = []
    for i in range(2):
        run_annotate(_cfg(tmp_path, pp, sp, f"s{i}.jsonl", shard=f"{i}/2"), FakeEngine(policy), progress=False)
        parts += ["--merge", str(tmp_path / f"s{i}.jsonl")]
    assert main(["annotate", *parts, "--samples", str(sp), "-o", str(tmp_path / "m.jsonl")]) == 0
    assert _rows(tmp_path / "m.jsonl") == _rows(tmp_path / "all.jsonl")
    assert main(["annotate", "--relabel", str(tmp_path / "all.jsonl"), "--gamma", "1.2", "--labels", "rel_ratio",
                 "-o", str(tmp_path / "re.jsonl")]) == 0
    assert all(r["label_params"]["gamma"] == 1.2 for r in _rows(tmp_path / "re.jsonl").values())
    capsys.readouterr()
    assert main(["annotate", "-o", str(tmp_path / "x.jsonl")]) == 2
    assert "missing --policy, --samples, --problems" in capsys.readouterr().err
    assert main(["annotate", *parts[:2], "--relabel", str(tmp_path / "all.jsonl"), "-o", str(tmp_path / "y")]) == 2
    assert "not both" in capsys.readouterr().err


def test_engine_flags_reach_the_stage_as_engine_options(monkeypatch, tmp_path):
    """`--engine openai` without `--base-url` fails when the engine is built, naming the flag."""
    from stepwiser.cli import main

    p = tmp_path / "problems.jsonl"
    p.write_text('{"id": "a", "problem": "1+1?", "answer": "2"}\n')
    seen = {}

    def fake_build(model, opts):
        seen["opts"] = opts
        raise RuntimeError("stop")

    monkeypatch.setattr("stepwiser.engines.build_engine", fake_build)
    code = main(["sample", "--policy", "m", "--problems", str(p), "-o", str(tmp_path / "o.jsonl"),
                 "--engine", "vllm", "--tp", "2", "--gpu-mem", "0.5"])
    assert code == 1
    o = seen["opts"]
    assert isinstance(o, EngineOptions) and (o.engine, o.tensor_parallel_size, o.gpu_memory_utilization) == \
        ("vllm", 2, 0.5)


def test_engine_options_may_come_from_the_config_file(monkeypatch, tmp_path):
    from stepwiser.cli import main

    p = tmp_path / "problems.jsonl"
    p.write_text('{"id": "a", "problem": "1+1?", "answer": "2"}\n')
    f = tmp_path / "c.yaml"
    f.write_text(f"sample:\n  policy: m\n  problems: {p}\n  out: {tmp_path / 'o.jsonl'}\n  engine: vllm\n"
                 "  tp: 4\n  gpu-mem: 0.3\n")
    seen = {}

    def fake_build(model, opts):
        seen["opts"] = opts
        raise RuntimeError("stop")

    monkeypatch.setattr("stepwiser.engines.build_engine", fake_build)
    assert main(["sample", "--config", str(f), "--tp", "2"]) == 1
    o = seen["opts"]
    assert (o.engine, o.tensor_parallel_size, o.gpu_memory_utilization) == ("vllm", 2, 0.3)   # flags win
    manifest = json.loads((tmp_path / "o.jsonl.manifest.json").read_text())
    assert manifest["config"]["engine"] == "vllm"


@dataclasses.dataclass
class ToyList:
    kinds: list[str] = option(["a"], "Kinds.", choices=("a", "b", "c"))

    def __post_init__(self):
        from stepwiser.io.config import check_choices
        check_choices(self)


@click.command()
@config_options(ToyList)
def toy_list(cfg):
    click.echo(repr(cfg))


def test_a_list_option_with_choices_takes_comma_separated_values():
    from click.testing import CliRunner

    r = CliRunner().invoke(toy_list, ["--kinds", "a,b", "--kinds", "c"])
    assert r.exit_code == 0 and "ToyList(kinds=['a', 'b', 'c'])" in r.output, r.output
    r = CliRunner().invoke(toy_list, ["--kinds", "a,z"])
    assert r.exit_code == 2 and "kinds must be one of a, b, c; got 'z'" in r.output


@dataclasses.dataclass
class ToyPaths:
    files: list[str] = option([], "Files.", path="file")


@click.command()
@config_options(ToyPaths)
def toy_paths(cfg):
    click.echo(repr(cfg))


def test_a_list_of_paths_takes_comma_separated_values_and_checks_each(tmp_path):
    from click.testing import CliRunner

    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("")
    b.write_text("")
    r = CliRunner().invoke(toy_paths, ["--files", f"{a},{b}"])
    assert r.exit_code == 0 and f"files=['{a}', '{b}']" in r.output, r.output
    r = CliRunner().invoke(toy_paths, ["--files", f"{a},{tmp_path / 'nope'}"])
    assert r.exit_code == 2 and "does not exist" in r.output and "--files" in r.output
