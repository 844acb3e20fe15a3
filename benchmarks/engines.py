"""Engine throughput: generated tokens/s at several batch sizes, and the HF engine's shared prefill.

    python benchmarks/engines.py                       # bundled SmolLM2, hf engine, CPU or GPU
    python benchmarks/engines.py --model Qwen/Qwen2.5-1.5B-Instruct --engines hf,vllm
    python benchmarks/engines.py --engines hf,openai --base-url http://localhost:8000/v1

Part 1 runs the same prompts (policy prompts of varied arithmetic problems, sampled at temperature
1.0 with a seed; batch size B takes the first `batches * B` of them) through each engine at each
batch size and reports generated tokens per second.
Part 2 (hf) samples n completions of one long prompt (a problem plus a long partial solution, as
Monte Carlo rollouts do) with the engine's shared prefill, and with
`model.generate(num_return_sequences=n)` on the same model, and reports the ratio of wall time and
of prompt tokens prefilled (counted by a hook on the model's forward pass).
Prints markdown tables.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import pick_engines, set_threads
from stepwiser.engines import Request, SamplingParams, make_engine
from stepwiser.models.loading import DEFAULT_MODEL
from stepwiser.data.prompts import policy_messages


def problems(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        a, b, c = rng.randint(2, 99), rng.randint(2, 99), rng.randint(2, 9)
        words = " ".join(["Explain each step."] * (i % 4))  # varied prompt lengths
        out.append(f"Compute ({a} + {b}) * {c}. {words}".strip())
    return out


def engine_options(name: str, args) -> dict:
    if name == "hf":
        return {"device": args.device, "dtype": args.dtype}
    if name == "openai":
        return {"base_url": args.base_url}
    return {}


def throughput(args) -> list[tuple]:
    all_requests = [Request(messages=policy_messages(p)) for p in problems(args.prompts)]
    params = SamplingParams(n=1, temperature=1.0, max_tokens=args.max_tokens, seed=0)
    rows = []
    for name in args.engines:
        for batch_size in args.batch_sizes:
            requests = all_requests[:batch_size * args.batches]
            options = engine_options(name, args) | ({"batch_size": batch_size} if name == "hf" else {})
            engine = make_engine(name, args.model, **options)
            engine.generate(requests[:1], SamplingParams(max_tokens=2))  # warm-up
            start = time.perf_counter()
            out = []  # at most batch_size sequences in flight, whatever the backend
            for i in range(0, len(requests), batch_size):
                out += engine.generate(requests[i:i + batch_size], params)
            seconds = time.perf_counter() - start
            tokens = sum(c.completion_tokens for cs in out for c in cs)
            rows.append((name, batch_size, len(requests), tokens, seconds, tokens / seconds))
            print(f"  {name} batch {batch_size}: {tokens} tokens in {seconds:.1f}s", file=sys.stderr)
            engine.close()
    return rows


def long_prompt(engine, target_tokens: int) -> Request:
    steps = [f"Step {i}: we add {i} to the running total and check the result against the previous "
             f"line, which gives {i * (i + 1) // 2}." for i in range(1, 400)]
    prefix, i = "", 0
    messages = policy_messages("What is the sum of the integers from 1 to 400?")
    while len(engine.encode([Request(messages=messages, prefix=prefix)])[0]) < target_tokens:
        prefix += steps[i] + "\n\n"
        i += 1
    return Request(messages=messages, prefix=prefix)


def shared_prefill(args) -> dict:
    import torch

    engine = make_engine("hf", args.model, batch_size=max(args.n, 1), device=args.device, dtype=args.dtype)
    request = long_prompt(engine, args.prompt_tokens)
    params = SamplingParams(n=args.n, temperature=1.0, max_tokens=args.rollout_tokens, seed=0)
    engine.generate([request], SamplingParams(max_tokens=2))  # warm-up
    before = engine.stats["prefill_tokens"]
    start = time.perf_counter()
    engine.generate([request], params)
    ours = time.perf_counter() - start
    ours_prefill = engine.stats["prefill_tokens"] - before

    calls = []
    hook = engine.hf_model.register_forward_pre_hook(
        lambda module, a, kw: calls.append(kw["input_ids"].numel()), with_kwargs=True)
    ids = torch.tensor([engine.encode([request])[0]], device=engine.device)
    start = time.perf_counter()
    with torch.inference_mode():
        engine.hf_model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                 temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=args.rollout_tokens,
                                 num_return_sequences=args.n, pad_token_id=engine.tokenizer.pad_token_id)
    theirs = time.perf_counter() - start
    hook.remove()
    return {"prompt_tokens": ids.shape[1], "n": args.n, "max_tokens": args.rollout_tokens,
            "shared_s": ours, "generate_s": theirs, "shared_prefill": ours_prefill,
            "generate_prefill": calls[0]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--engines", default=None, help="comma-separated; default: hf, plus vllm if "
                        "importable and openai if --base-url is given")
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--batch-sizes", default="1,16,64")
    parser.add_argument("--prompts", type=int, default=64, help="prompts in the throughput set")
    parser.add_argument("--batches", type=int, default=2, help="each batch size B runs the first "
                        "min(prompts, batches * B) prompts of the set")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--n", type=int, default=16, help="samples of one prompt in part 2")
    parser.add_argument("--prompt-tokens", type=int, default=1024, help="length of the part-2 prompt")
    parser.add_argument("--rollout-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (torch.set_num_threads)")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args(argv)
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    args.engines = pick_engines(args.engines, args.base_url)
    set_threads(args.threads)
    print(f"model: {args.model}; engines: {', '.join(args.engines)}; load average before: "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    if not args.skip_throughput:
        rows = throughput(args)
        print(f"Throughput (temperature 1.0, max_tokens {args.max_tokens}, up to {args.batches} "
              f"batches per batch size)\n")
        print("| engine | batch size | prompts | generated tokens | seconds | tokens/s |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, bs, count, tokens, seconds, rate in rows:
            print(f"| {name} | {bs} | {count} | {tokens} | {seconds:.1f} | {rate:.1f} |")
        print()
    if "hf" in args.engines:
        r = shared_prefill(args)
        print(f"Shared prefill (hf): n={r['n']} samples of one {r['prompt_tokens']}-token prompt, "
              f"max_tokens {r['max_tokens']}\n")
        print("| method | seconds | prompt tokens prefilled |")
        print("|---|---:|---:|")
        print(f"| HFEngine (prefill once, KV cache repeated) | {r['shared_s']:.2f} | {r['shared_prefill']} |")
        print(f"| model.generate(num_return_sequences=n) | {r['generate_s']:.2f} | {r['generate_prefill']} |")
        print(f"| ratio generate / HFEngine | {r['generate_s'] / r['shared_s']:.2f}x | "
              f"{r['generate_prefill'] / r['shared_prefill']:.1f}x |")


if __name__ == "__main__":
    main()
