"""Layer 5: judges behind one judging API (`StepJudge.judge(items, k)`): generative (the StepWiser
judge), discriminative (the Disc+SFT baseline), whole-solution critics, off-the-shelf PRMs, the
reference floors/oracle, and the stepwise ProcessBench protocol. Imports `core`, `io`, `data`,
`models` and `engines`; never `train`, `stages` or `cli`."""
