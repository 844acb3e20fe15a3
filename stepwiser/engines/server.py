"""A minimal OpenAI-compatible HTTP server around any `Engine` (standard library only).

Endpoints: `POST /v1/completions` (`prompt`: a string or a list of strings), `POST /v1/chat/completions`
(`messages`; the engine applies its chat template), `GET /v1/models`. Sampling fields: `n`,
`temperature`, `top_p`, `max_tokens` (`max_completion_tokens` too for chat; default 512 as in
`SamplingParams`), `stop` (a string or a list), `seed`. Streaming, logprobs and tools are not supported
(400). Generation is serialized with a lock, so one engine (not thread-safe) serves every connection;
usage counts each prompt once, however large `n` is (as OpenAI and vLLM do).

Used by the tests of the `openai` engine, and as a tiny local server on CPU:

    python -m stepwiser.engines.server --model smollm2-135m-instruct --port 8000
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from stepwiser.engines.base import Completion, Engine, EngineError, Request, SamplingParams

_UNSUPPORTED = ("stream", "logprobs", "top_logprobs", "tools", "functions", "echo", "suffix")


class BadRequest(ValueError):
    """A client error: answered with HTTP 400 (or `status`) and an OpenAI-style error object."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def sampling_from_body(body: dict, chat: bool) -> SamplingParams:
    """The `SamplingParams` of an OpenAI request body (raises BadRequest on invalid values)."""
    for key in _UNSUPPORTED:
        if body.get(key):
            raise BadRequest(f"`{key}` is not supported by this server")
    if body.get("best_of") not in (None, 1):
        raise BadRequest("`best_of` is not supported by this server")
    stop = body.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise BadRequest("`stop` must be a string or a list of strings")
    max_tokens = body.get("max_completion_tokens") if chat else None
    max_tokens = max_tokens if max_tokens is not None else body.get("max_tokens")
    kwargs = {"n": body.get("n"), "temperature": body.get("temperature"), "top_p": body.get("top_p"),
              "max_tokens": max_tokens, "seed": body.get("seed")}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    for k, v in kwargs.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise BadRequest(f"`{k}` must be a number, got {v!r}")
    for k in ("n", "max_tokens", "seed"):
        if k in kwargs and kwargs[k] != int(kwargs[k]):
            raise BadRequest(f"`{k}` must be an integer, got {kwargs[k]!r}")
        if k in kwargs:
            kwargs[k] = int(kwargs[k])
    try:
        return SamplingParams(stop=stop, **kwargs)
    except ValueError as e:
        raise BadRequest(str(e)) from None


def requests_from_body(body: dict, chat: bool) -> list[Request]:
    """The engine requests of an OpenAI body: one chat, or one per completion prompt."""
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages):
            raise BadRequest("`messages` must be a non-empty list of {role, content} objects with text content")
        return [Request(messages=[{"role": m["role"], "content": m["content"]} for m in messages])]
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise BadRequest("`prompt` must be a string or a non-empty list of strings (token ids are not supported)")
    return [Request(text=p) for p in prompts]


def response_body(completions: list[list[Completion]], model: str, chat: bool) -> dict:
    """An OpenAI response object for the completions of each prompt (choices are prompt-major)."""
    choices = []
    for group in completions:
        for c in group:
            choice = {"index": len(choices), "finish_reason": c.finish_reason, "logprobs": None}
            if chat:
                choice["message"] = {"role": "assistant", "content": c.text}
            else:
                choice["text"] = c.text
            choices.append(choice)
    prompt_tokens = sum(group[0].prompt_tokens for group in completions if group)
    completion_tokens = sum(c.completion_tokens for group in completions for c in group)
    kind = "chatcmpl" if chat else "cmpl"
    return {"id": f"{kind}-{uuid.uuid4().hex}", "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": model, "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EngineHTTPServer

    def log_message(self, format, *args):
        pass

    def _send(self, status: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._send(status, {"error": {"message": message, "type": kind, "code": status}})

    def do_GET(self):
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [
                {"id": self.server.model_name, "object": "model", "created": 0, "owned_by": "stepwiser"}]})
        elif self.path.rstrip("/") in ("/health", ""):
            self._send(200, {"status": "ok"})
        else:
            self._error(404, f"no route GET {self.path}")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.rstrip("/")
        if path not in ("/v1/completions", "/v1/chat/completions"):
            self._error(404, f"no route POST {self.path}")
            return
        try:
            body = json.loads(raw or b"null")
            if not isinstance(body, dict):
                raise BadRequest("the request body must be a JSON object")
            self._send(200, self.server.complete(body, chat=path == "/v1/chat/completions"))
        except json.JSONDecodeError as e:
            self._error(400, f"the request body is not JSON: {e}")
        except BadRequest as e:
            self._error(e.status, str(e))
        except EngineError as e:
            self._error(500, f"generation failed: {e}", "server_error")
        except ValueError as e:  # the engine rejected the input (e.g. a prompt longer than the model allows)
            self._error(400, str(e))
        except Exception as e:  # noqa: BLE001 - answer 500 instead of dropping the connection
            self._error(500, f"generation failed: {type(e).__name__}: {e}", "server_error")


class EngineHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that answers OpenAI requests with `engine` (one generation at a time)."""

    daemon_threads = True

    def __init__(self, engine: Engine, address: tuple[str, int], model_name: str | None = None):
        super().__init__(address, _Handler)
        self.engine = engine
        self.model_name = model_name or engine.model
        self.lock = threading.Lock()

    def complete(self, body: dict, chat: bool) -> dict:
        model = body.get("model")
        if model is not None and model != self.model_name:
            raise BadRequest(f"the model `{model}` does not exist; this server serves `{self.model_name}`", 404)
        params = sampling_from_body(body, chat)
        requests = requests_from_body(body, chat)
        with self.lock:
            completions = self.engine.generate(requests, params)
        return response_body(completions, self.model_name, chat)


def serve(engine: Engine, host: str = "127.0.0.1", port: int = 0,
          model_name: str | None = None) -> tuple[EngineHTTPServer, threading.Thread, str]:
    """Serve `engine` in a daemon thread; returns (server, thread, base URL). Port 0 picks a free port.
    Stop it with `server.shutdown(); server.server_close()`."""
    server = EngineHTTPServer(engine, (host, port), model_name)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="stepwiser-openai-server", daemon=True)
    thread.start()
    bound_host, bound_port = server.server_address[:2]
    return server, thread, f"http://{bound_host}:{bound_port}"


def main(argv: list[str] | None = None) -> None:
    """Serve a model over HTTP in the foreground (Ctrl-C stops it)."""
    import argparse

    from stepwiser.engines import make_engine

    ap = argparse.ArgumentParser(prog="python -m stepwiser.engines.server", description=main.__doc__)
    ap.add_argument("--model", required=True, help="model (C5): HF id, local dir or smollm2-135m-instruct")
    ap.add_argument("--engine", default="hf", choices=("hf", "vllm"), help="backend that generates")
    ap.add_argument("--served-model-name", default=None, help="name clients must send (default: --model)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args(argv)
    engine = make_engine(args.engine, args.model)
    server = EngineHTTPServer(engine, (args.host, args.port), args.served_model_name or args.model)
    print(f"serving {server.model_name} at http://{args.host}:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        engine.close()


if __name__ == "__main__":
    main()
