"""Layer 6: one module per pipeline stage (what a `stepwiser SUB` command runs): sample, segment,
annotate, relabel, judge-data, train-judge, export-judge, eval (processbench, accuracy, labels),
report. Each reads files, writes files with a manifest (C7) and resumes. Imports every layer below;
never `cli`."""
