"""Layer 1: pure maths and parsing (no model, no file I/O): Monte Carlo labels (`labels`), early
stopping of rollouts (`earlystop`), chunk text (`chunks`, C6), the one verdict/boxed parser (`verdict`),
ProcessBench metrics and bootstrap intervals (`metrics`), the micro domain's arithmetic (`arith`) and
answer verification with math-verify (`verify`, `verify_pool`). Imports nothing above it."""
