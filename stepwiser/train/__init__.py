"""Training: `sft` (TRL SFTTrainer: the chunk policy, and the judge's SFT baselines), `cpu_loss` (a faster
SFT loss for CPU runs), and the judge's RL and supervised methods. Modules import torch/TRL lazily where
they can; import the submodule you need (`from stepwiser.train.sft import train_sft`)."""
