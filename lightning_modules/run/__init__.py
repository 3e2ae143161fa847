"""Assembling a run: build, one-line config errors, checkpoints, resume, threads, wandb."""
