"""Shared data for the tests of `stepwiser.eval`: a hand-made ProcessBench subset and a fake judge policy."""
import json

ITEMS = [
    {"id": "a", "problem": "Problem A", "steps": ["a0 ok", "a1 ok", "a2 ok"], "label": -1},
    {"id": "b", "problem": "Problem B", "steps": ["b0 ok", "b1 BAD", "b2 ok", "b3 ok"], "label": 1},
    {"id": "c", "problem": "Problem C", "steps": ["c0 BAD", "c1 ok"], "label": 0},
    {"id": "d", "problem": "Problem D", "steps": ["d0 ok", "d1 ???", "d2 ok"], "label": 2},
]


def write_bench(folder, subsets):
    """Write {subset: items} as <subset>.json files (JSON lists, the ProcessBench layout) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, items in subsets.items():
        (folder / f"{name}.json").write_text(json.dumps(items))
    return folder


def new_chunk(prompt: str) -> str:
    return prompt.split("### New chunk\n")[1].split("\n\n### End of input")[0]


def verdict_policy(prompt, rng, req):
    """A FakeEngine judge: Negative on chunks with BAD, no verdict on chunks with ???, else Positive."""
    chunk = new_chunk(prompt)
    if "BAD" in chunk:
        return "The sum is wrong. \\boxed{Negative}"
    if "???" in chunk:
        return "I cannot tell."
    return "All fine. \\boxed{Positive}"


def records(path) -> dict:
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}
