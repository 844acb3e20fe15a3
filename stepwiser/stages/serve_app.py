"""The FastAPI app of `stepwiser serve` (contract C9); the batching, queue and timeouts are in
`stepwiser.stages.serve`.

- ``POST /score`` ``{"items": [{"problem": str, "response": str}, ...], "aggregate"?: str, "unparsed"?: str}``
  -> ``{"results": [{"chunks": [...], "verdicts": ["Positive"|"Negative"|null, ...], "score": float}, ...]}``
- ``POST /get_reward`` (OpenRLHF ``--remote_rm_url``) ``{"query": [str], "prompts": [str], "labels": [...]}``
  -> ``{"rewards": [float], "scores": [float], "extra_logs": {name: [float per query]}}``; the response is
  the query minus its prompt; the problem is the prompt's last user turn (`problem_from_prompt`);
  with ``--combine times|plus`` the labels are the reference answers and the reward mixes in the
  outcome (scores stay the process reward).
- ``GET /health`` -> 200 with the counters, 503 while an engine call runs past the timeout.

Errors are JSON ``{"error": message}``: 422 for a malformed body, 413 for a request larger than the
queue, 503 when the queue is full, 504 when the judge does not answer in time, 502 when it fails.
"""
# no `from __future__ import annotations`: FastAPI reads the body models from the annotations at runtime
import asyncio
import contextlib

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from stepwiser.core.aggregate import combine
from stepwiser.judges.base import StepJudge
from stepwiser.judges.process_reward import problem_from_prompt, response_from_query
from stepwiser.stages.serve import Batcher, ServeConfig, ServiceError


class ScoreItem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    problem: str
    response: str


class ScoreBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    items: list[ScoreItem]
    aggregate: str | None = Field(None, description="min | mean | first-negative (default: the server's)")
    unparsed: str | None = Field(None, description="negative | positive | skip (default: the server's)")


class RewardBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    query: list[str]
    prompts: list[str]
    labels: list | None = None


def error(status: int, message: str, **extra) -> JSONResponse:
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def describe(errors: list) -> str:
    parts = []
    for e in errors[:5]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else "")


def outcomes_of(responses: list[str], labels: list) -> list[float]:
    from stepwiser.core.verify import check_batch

    results = check_batch([(r, str(lab)) for r, lab in zip(responses, labels)])
    return [float(res.correct) for res in results]


def reward_pairs(body: RewardBody, cfg: ServeConfig) -> list[tuple[str, str]]:
    if len(body.prompts) != len(body.query):
        raise ServiceError(422, f"query has {len(body.query)} entries but prompts has {len(body.prompts)}")
    if cfg.combine != "none" and (body.labels is None or len(body.labels) != len(body.query)):
        raise ServiceError(422, f"--combine {cfg.combine} needs one label (the reference answer) per query")
    pairs = []
    for i, (q, p) in enumerate(zip(body.query, body.prompts)):
        try:
            pairs.append((problem_from_prompt(p), response_from_query(q, p)))
        except ValueError:
            raise ServiceError(422, f"prompts[{i}] is not found in query[{i}]") from None
    return pairs


def extra_logs(scored) -> dict:
    out = {"chunks": [], "positive_share": [], "unparsed": []}
    for r in scored:
        n = len(r.verdicts)
        out["chunks"].append(float(n))
        out["positive_share"].append(sum(v == 1 for v in r.verdicts) / n if n else 0.0)
        out["unparsed"].append(float(sum(v is None for v in r.verdicts)))
    return out


def make_app(judge: StepJudge, cfg: ServeConfig) -> FastAPI:
    """The service for `judge` (any StepJudge) with the settings of `cfg`."""
    batcher = Batcher(judge, cfg)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="stepwiser serve", lifespan=lifespan)
    app.state.batcher = batcher

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError):
        return error(422, f"invalid request body: {describe(exc.errors())}")

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError):
        return error(exc.status, exc.message)

    @app.get("/health")
    async def health():
        status, body = batcher.health()
        return JSONResponse(body, status_code=status)

    @app.post("/score")
    async def score(body: ScoreBody):
        try:
            scored = await batcher.score([(it.problem, it.response) for it in body.items], body.aggregate,
                                         body.unparsed)
        except ValueError as e:   # an unknown aggregate or unparsed rule
            raise ServiceError(422, str(e)) from None
        return {"results": [r.to_json() for r in scored]}

    @app.post("/get_reward")
    async def get_reward(body: RewardBody):
        pairs = reward_pairs(body, cfg)
        scored = await batcher.score(pairs)
        scores = [r.score for r in scored]
        logs = extra_logs(scored)
        rewards = scores
        if cfg.combine != "none":
            outcomes = await asyncio.to_thread(outcomes_of, [r for _, r in pairs], body.labels)
            rewards = [combine(s, o, cfg.combine) for s, o in zip(scores, outcomes)]
            logs["outcome"] = outcomes
        return {"rewards": rewards, "scores": scores, "extra_logs": logs}

    return app


def run_serve(cfg: ServeConfig, judge: StepJudge) -> None:
    """Serve `judge` on cfg.host:cfg.port until interrupted."""
    import uvicorn

    uvicorn.run(make_app(judge, cfg), host=cfg.host, port=cfg.port, log_level=cfg.log_level)
