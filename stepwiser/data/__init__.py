"""Layer 3: data: problem and ProcessBench loaders (`datasets`, `bench`, `predictions`), the micro
arithmetic domain and its synthetic bench (`synth`, `synth_scenarios`), the policy prompt (`prompts`).
Imports `core` and `io` only."""
