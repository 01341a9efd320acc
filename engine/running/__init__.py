"""Running experiments: the queue worker, its per-device pool and control, Slurm launch, the
training child process and its store reporter, and run provenance."""
