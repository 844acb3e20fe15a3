"""The `openai` engine: any OpenAI-compatible server (vLLM serve, SGLang, llama.cpp server, ...) over httpx.

Chat requests go to `/v1/chat/completions` (the server applies the chat template) unless a local
`tokenizer` is given: then the template is applied here and `/v1/completions` is used, which is what
prefix continuation (rollouts) needs. Raw `text` requests always use `/v1/completions`.

Several servers (`base_url="URL1,URL2"`) share the load: each HTTP call goes to the healthy server
with the fewest calls in flight (round-robin among ties); `concurrency` x (number of servers) calls
are in flight at most, so `concurrency` per server while all are healthy (one left standing takes
them all).
429, 5xx, connection errors and timeouts are retried up to `max_retries` times with exponential
back-off and jitter; a failing server cools down (exponentially longer each time) while the call
fails over to another one. Other 4xx answers and malformed answers fail at once with EngineError.

`n` is sent in one call; if a server returns fewer choices (llama.cpp ignores `n`), the rest are
asked for in follow-up calls, with `seed + k` for the k-th follow-up when a seed is set. For greedy
decoding one choice is requested and repeated n times.

Token counts: `prompt_tokens` is the server's `usage.prompt_tokens` (counted once per prompt). The
completion tokens of a choice are exact when the server gives the choice's `token_ids` or when the
answer has a single choice (`usage.completion_tokens`). Otherwise (n > 1 in one answer) they are
counted by re-tokenizing the choice's text with the local tokenizer when one is given (this misses
an EOS or stop-string token), else `usage.completion_tokens` is split across choices in proportion
to their text length (the split sums to the server's total).
"""
from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx

from stepwiser.engines.base import Completion, Engine, EngineError, Request, SamplingParams

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
FINISH_REASONS = {"stop": "stop", "eos": "stop", "eos_token": "stop", "stop_sequence": "stop",
                  "end_turn": "stop", "length": "length", "max_tokens": "length", "model_length": "length"}


def parse_base_urls(base_url: str | list[str]) -> list[str]:
    """`"URL[,URL...]"` -> server roots without a trailing `/` or `/v1` (ValueError when malformed)."""
    parts = base_url.split(",") if isinstance(base_url, str) else list(base_url)
    urls = []
    for part in (p.strip().rstrip("/") for p in parts):
        if not part:
            continue
        if not part.startswith(("http://", "https://")):
            raise ValueError(f"base URL {part!r} must start with http:// or https://")
        urls.append(part.removesuffix("/v1"))
    if not urls:
        raise ValueError("the openai engine needs at least one base URL (--base-url URL[,URL...])")
    return urls


def split_total(total: int, weights: list[int]) -> list[int]:
    """Split the integer `total` in proportion to `weights` (largest remainder; sums to `total`)."""
    if not weights:
        return []
    w = [max(x, 0) for x in weights]
    if sum(w) == 0:
        w = [1] * len(w)
    exact = [total * x / sum(w) for x in w]
    parts = [int(e) for e in exact]
    order = sorted(range(len(w)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


class ServerPool:
    """Least-in-flight choice among healthy servers; failing servers cool down exponentially."""

    def __init__(self, urls: list[str], backoff: float, backoff_max: float):
        self.urls = urls
        self.backoff, self.backoff_max = backoff, backoff_max
        self.in_flight = [0] * len(urls)
        self.failures = [0] * len(urls)
        self.bad_until = [0.0] * len(urls)
        self._next = 0
        self._lock = threading.Lock()

    def acquire(self) -> tuple[int, float]:
        """(server index, seconds until it is out of cool-down: 0 when a healthy server exists)."""
        with self._lock:
            now = time.monotonic()
            k = len(self.urls)
            order = [(self._next + j) % k for j in range(k)]
            healthy = [i for i in order if self.bad_until[i] <= now]
            if healthy:
                i = min(healthy, key=lambda j: self.in_flight[j])
                wait = 0.0
            else:
                i = min(order, key=lambda j: self.bad_until[j])
                wait = self.bad_until[i] - now
            self._next = (i + 1) % k
            self.in_flight[i] += 1
            return i, wait

    def release(self, i: int, failed: bool) -> None:
        with self._lock:
            self.in_flight[i] -= 1
            now = time.monotonic()
            if failed and self.bad_until[i] <= now:  # failures of calls already in flight count once
                self.failures[i] += 1
                cool = min(self.backoff_max, self.backoff * 2 ** (self.failures[i] - 1))
                self.bad_until[i] = now + cool
            else:
                self.failures[i] = 0
                self.bad_until[i] = 0.0


class OpenAIEngine(Engine):
    name = "openai"

    def __init__(self, model: str, base_url: str | list[str] = "http://127.0.0.1:8000",
                 tokenizer=None, api_key: str | None = None, concurrency: int = 16,
                 timeout: float = 600, max_retries: int = 5, retry_backoff: float = 0.5,
                 retry_backoff_max: float = 30.0):
        """`model`: the served model name; `tokenizer`: a name for `stepwiser.models.loading.load_tokenizer`
        (or a loaded HF tokenizer) to apply the chat template locally; `concurrency`: calls in flight
        per server; `timeout`: seconds per HTTP call; `api_key` defaults to $OPENAI_API_KEY."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.model = model
        self.urls = parse_base_urls(base_url)
        self.concurrency, self.max_retries = concurrency, max_retries
        self.backoff, self.backoff_max = retry_backoff, retry_backoff_max
        if isinstance(tokenizer, str):
            from stepwiser.models.loading import load_tokenizer
            tokenizer = load_tokenizer(tokenizer)
        self.tokenizer = tokenizer
        self._tok_lock = threading.Lock()  # HF fast tokenizers are not safe to share across threads
        self._bos_added = _bos_added_by(tokenizer)
        self.pool = ServerPool(self.urls, retry_backoff, retry_backoff_max)
        api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        n_conn = concurrency * len(self.urls)
        self.client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                                   limits=httpx.Limits(max_connections=n_conn, max_keepalive_connections=n_conn))

    # -- prompts -------------------------------------------------------------------------------------

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        if self.tokenizer is None:
            raise EngineError("the openai engine has no local tokenizer to apply the chat template; pass "
                              "--tokenizer NAME (the served model's tokenizer)")
        if not getattr(self.tokenizer, "chat_template", None):
            raise EngineError(f"the tokenizer of {self.model} has no chat template")
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def _completion_prompt(self, request: Request) -> str:
        """The text sent to /v1/completions. A chat template that starts with BOS loses it when the
        tokenizer adds BOS itself, since servers tokenize completion prompts with special tokens."""
        text = self.prompt_text(request)
        if request.text is None and self._bos_added:
            text = text.removeprefix(self._bos_added)
        return text

    def _count(self, text: str, special: bool) -> int:
        with self._tok_lock:
            return len(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def _payload(self, request: Request, params: SamplingParams) -> tuple[str, dict]:
        """(endpoint, JSON body without `n`/`seed`) for one request."""
        body = {"model": self.model, "temperature": params.temperature, "top_p": params.top_p,
                "max_tokens": params.max_tokens}
        if params.stop:
            body["stop"] = list(params.stop)
        if request.text is None and self.tokenizer is None:
            if request.prefix:
                raise EngineError("continuing an assistant prefix (rollouts) needs the completions endpoint: "
                                  "pass --tokenizer NAME to the openai engine so the chat template is "
                                  "applied locally")
            return "/v1/chat/completions", {**body, "messages": request.messages}
        return "/v1/completions", {**body, "prompt": self._completion_prompt(request)}

    # -- generation ----------------------------------------------------------------------------------

    def generate(self, requests: list[Request], params: SamplingParams) -> list[list[Completion]]:
        jobs = [self._payload(r, params) for r in requests]  # fails before any call on a bad request
        if not jobs:
            return []
        stop = threading.Event()
        seeds = [r.seed if r.seed is not None else params.seed for r in requests]
        workers = min(len(jobs), self.concurrency * len(self.urls))
        ex = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openai-engine")
        futures = [ex.submit(self._one, endpoint, body, seed, params, stop)
                   for (endpoint, body), seed in zip(jobs, seeds)]
        try:
            results = [f.result() for f in futures]
        except BaseException:
            stop.set()
            ex.shutdown(wait=False, cancel_futures=True)
            raise
        ex.shutdown()
        return results

    def _one(self, endpoint: str, body: dict, seed: int | None, params: SamplingParams,
             stop: threading.Event) -> list[Completion]:
        """The `params.n` completions of one prompt (follow-up calls when a server returns fewer)."""
        want = 1 if params.greedy else params.n
        out: list[Completion] = []
        for call in range(want):  # each call adds >= 1 choice, so `want` calls always suffice
            payload = {**body, "n": want - len(out)}
            if seed is not None:
                payload["seed"] = seed + call
            data, url = self._post(endpoint, payload, stop)
            got = self._parse(data, url + endpoint, body.get("prompt"))
            out.extend(got[: want - len(out)])
            if len(out) == want:
                break
        assert len(out) == want
        return [replace(out[0]) for _ in range(params.n)] if params.greedy else out

    def _post(self, endpoint: str, payload: dict, stop: threading.Event) -> tuple[dict, str]:
        """POST to a server with retries and failover; returns (JSON object, server URL)."""
        errors = []
        for attempt in range(self.max_retries + 1):
            if stop.is_set():
                raise EngineError("cancelled: another request of this batch failed")
            i, wait = self.pool.acquire()
            url, failed = self.urls[i], True
            try:
                if wait > 0:  # every server is cooling down: exponential back-off with jitter
                    time.sleep(min(self.backoff_max, self.backoff * 2 ** attempt) * random.uniform(0.5, 1.0))
                resp = self.client.post(url + endpoint, json=payload)
                failed = resp.status_code in RETRY_STATUS
            except httpx.TransportError as e:  # connection refused/reset, timeouts, protocol errors
                errors.append(f"{url}: {type(e).__name__}: {e or 'no detail'}")
                continue
            finally:
                self.pool.release(i, failed)
            if failed:
                errors.append(f"{url}: HTTP {resp.status_code} {_error_message(resp)}")
                delay = _retry_after(resp)
                if delay:
                    time.sleep(min(delay, self.backoff_max))
                continue
            if resp.status_code >= 400:
                raise EngineError(f"{url}{endpoint} refused the request: HTTP {resp.status_code} "
                                  f"{_error_message(resp)}")
            return _json_object(resp, url + endpoint), url
        raise EngineError(f"no server answered {endpoint} successfully in {self.max_retries + 1} attempts "
                          f"(servers: {', '.join(self.urls)}); is the server running and is --base-url "
                          f"right? Last errors: {'; '.join(errors[-3:])}")

    def _parse(self, data: dict, where: str, prompt: str | None) -> list[Completion]:
        """Completions of one OpenAI answer (EngineError naming `where` when it is malformed)."""
        chat = "chat/completions" in where
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not all(isinstance(c, dict) for c in choices):
            raise EngineError(f"{where} answered without choices: {str(data)[:300]}")
        choices = sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c.get("index"), int) else 0)
        texts, reasons = [], []
        for c in choices:
            text = (c.get("message") or {}).get("content") if chat else c.get("text")
            if not isinstance(text, str):
                raise EngineError(f"{where} answered a choice without text: {str(c)[:300]}")
            reason = FINISH_REASONS.get(c.get("finish_reason"))
            if reason is None:
                raise EngineError(f"{where} answered an unusable finish_reason {c.get('finish_reason')!r} "
                                  f"(expected stop or length)")
            texts.append(text)
            reasons.append(reason)
        prompt_tokens, counts = self._token_counts(data, choices, texts, where, prompt)
        return [Completion(t, prompt_tokens, k, r) for t, k, r in zip(texts, counts, reasons)]

    def _token_counts(self, data: dict, choices: list[dict], texts: list[str], where: str,
                      prompt: str | None) -> tuple[int, list[int]]:
        """(prompt tokens, completion tokens per choice): see the module docstring."""
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        p_tok, c_tok = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if not isinstance(p_tok, int):
            if self.tokenizer is None or prompt is None:
                raise EngineError(f"{where} answered without usage.prompt_tokens; pass --tokenizer NAME to "
                                  f"count tokens locally")
            p_tok = self._count(prompt, special=True)
        if all(isinstance(c.get("token_ids"), list) for c in choices):
            return p_tok, [len(c["token_ids"]) for c in choices]
        if len(choices) == 1 and isinstance(c_tok, int):
            return p_tok, [c_tok]
        if self.tokenizer is not None:
            return p_tok, [self._count(t, special=False) for t in texts]
        if not isinstance(c_tok, int):
            raise EngineError(f"{where} answered without usage.completion_tokens; pass --tokenizer NAME to "
                              f"count tokens locally")
        return p_tok, split_total(c_tok, [len(t) for t in texts])

    def close(self) -> None:
        self.client.close()


def _bos_added_by(tokenizer) -> str | None:
    """The BOS text when `tokenizer` prepends BOS on its own (Llama-style), else None."""
    bos = getattr(tokenizer, "bos_token", None)
    if tokenizer is None or not bos:
        return None
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bos if ids and ids[0] == tokenizer.bos_token_id else None


def _error_message(resp: httpx.Response) -> str:
    """The server's error message (OpenAI `{"error": {"message": ...}}` or the body's start)."""
    try:
        err = resp.json().get("error")
        msg = err.get("message") if isinstance(err, dict) else err
        if msg:
            return str(msg)[:300]
    except (ValueError, AttributeError):
        pass
    return resp.text[:300]


def _retry_after(resp: httpx.Response) -> float:
    try:
        return max(0.0, float(resp.headers.get("Retry-After", "")))
    except ValueError:
        return 0.0


def _json_object(resp: httpx.Response, where: str) -> dict:
    try:
        data = resp.json()
    except ValueError:
        raise EngineError(f"{where} answered something that is not JSON (is --base-url an OpenAI-compatible "
                          f"server?): {resp.text[:200]!r}") from None
    if not isinstance(data, dict):
        raise EngineError(f"{where} answered JSON that is not an object: {str(data)[:200]}")
    return data
