"""Real processes for CRIU to dump: the service workload and the harness that runs CRIU on it."""
