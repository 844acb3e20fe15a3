"""`stepwiser serve`: the judge as an HTTP process-reward service (C9) for OpenRLHF, verl and TRL."""
from __future__ import annotations

import dataclasses

import click

from stepwiser.cli.common import engine_options
from stepwiser.cli.options import config_options
from stepwiser.stages.serve import ServeConfig


@click.command("serve")
@config_options(ServeConfig, section="serve")
@engine_options()
def command(cfg, engine_opts):
    """Serve a judge as a process reward: POST /score, POST /get_reward (OpenRLHF), GET /health.

    \b
      stepwiser serve --judge runs/judge --port 8000 --aggregate min
      stepwiser serve --judge runs/judge --engine vllm --host 0.0.0.0 --max-batch 512
    OpenRLHF: --remote_rm_url http://HOST:8000/get_reward. verl and TRL: see docs/PROCESS_REWARD.md.
    """
    import importlib.util

    from stepwiser.errors import StepwiserError
    from stepwiser.stages.serve import load_serve_judge

    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise StepwiserError(f"stepwiser serve needs {' and '.join(missing)}: pip install fastapi uvicorn")
    from stepwiser.stages.serve_app import run_serve

    cfg = dataclasses.replace(cfg, engine=engine_opts.engine)
    judge = load_serve_judge(cfg, engine_opts)
    click.echo(f"stepwiser serve: judge {cfg.judge} ({cfg.aggregate}) on http://{cfg.host}:{cfg.port}", err=True)
    run_serve(cfg, judge)
