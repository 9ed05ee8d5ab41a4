"""`mixture-ray slurm`: a Ray cluster inside a Slurm allocation that runs a pipeline or one stage (sbatch)."""
