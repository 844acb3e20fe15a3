"""Layer 7: one module per pipeline stage (what a `stepwiser SUB` command runs): data,
sample, segment, annotate, relabel and merge (annotate --relabel / --merge), judge-data, train-judge,
export-judge, eval (processbench, accuracy, labels), report, ... Each declares its config dataclass
(the command's options), reads files, writes files with a manifest (C7) and resumes. Imports every
layer below; never `cli`."""
