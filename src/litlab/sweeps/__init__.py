"""Running many processes and many jobs: DDP ranks in one run directory, sweep jobs, sweep summaries."""
