"""float32 versus bfloat16 on this CPU: training step and decoding, side by side in one run.

    python benchmarks/dtype.py                  # bundled SmolLM2-135M-Instruct, one thread
    python benchmarks/dtype.py --threads 2 --reps 3

Whether `--bf16` (autocast) or `--dtype bfloat16` pays on a CPU depends on its bf16 units: on CPUs with
AMX an earlier session measured bf16 decoding 2.2x faster than float32 (docs/RESULTS.md, section 2); on a CPU with
AVX2 only (no AVX512-BF16, no AMX) bf16 is emulated and much slower. This script measures both, so that a
user picks the dtype for their own machine:

- training: forward + backward of the causal-LM loss on `--batch` x `--seq` random tokens, float32
  weights, with autocast off (float32) and with `torch.autocast("cpu", dtype=torch.bfloat16)` (what
  `--bf16` does on CPU);
- decoding: greedy `generate` of `--new-tokens` tokens (no early stop) for `--gen-batch` random prompts of
  `--prompt` tokens, with the model in float32 and in bfloat16 (what `--dtype bfloat16` does).

Prints the CPU's bf16 flags, a markdown table (median seconds, tokens/s) and the bf16/fp32 ratios.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import set_threads


def cpu_bf16_flags() -> str:
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    found = [f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f in flags]
    return ", ".join(found) or "none of amx_bf16/avx512_bf16/avx512f/avx2"


def time_train(model, torch, batch: int, seq: int, bf16: bool, reps: int) -> float:
    x = torch.randint(0, model.config.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(reps):
        model.zero_grad(set_to_none=True)
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(x, labels=x).loss
        loss.backward()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def time_decode(model, torch, batch: int, prompt: int, new_tokens: int, reps: int) -> float:
    ids = torch.randint(0, model.config.vocab_size, (batch, prompt), generator=torch.Generator().manual_seed(1))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        with torch.no_grad():
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, do_sample=False)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=210)
    ap.add_argument("--gen-batch", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=100)
    ap.add_argument("--new-tokens", type=int, default=32)
    args = ap.parse_args()
    set_threads(args.threads)
    import torch
    from transformers import AutoModelForCausalLM

    from stepwiser.models.loading import resolve_model

    model = AutoModelForCausalLM.from_pretrained(resolve_model(args.model), dtype=torch.float32)
    print(f"CPU flags: {cpu_bf16_flags()}; threads {args.threads}; median of {args.reps}")
    train = {bf16: time_train(model, torch, args.batch, args.seq, bf16, args.reps) for bf16 in (False, True)}
    model.zero_grad(set_to_none=True)
    decode = {}
    for dt in (torch.float32, torch.bfloat16):
        decode[dt] = time_decode(model.to(dt), torch, args.gen_batch, args.prompt, args.new_tokens, args.reps)
    toks = args.gen_batch * args.new_tokens
    print("\n| measure | float32 | bfloat16 | bf16 / fp32 time |\n|---|---:|---:|---:|")
    print(f"| train fwd+bwd {args.batch}x{args.seq} (s) | {train[False]:.2f} | {train[True]:.2f} | "
          f"{train[True] / train[False]:.2f} |")
    print(f"| decode {args.gen_batch} seqs x {args.new_tokens} tokens (tokens/s) | {toks / decode[torch.float32]:.1f} | "
          f"{toks / decode[torch.bfloat16]:.1f} | {decode[torch.bfloat16] / decode[torch.float32]:.2f} |")


if __name__ == "__main__":
    main()
