"""Backends: where a job script runs (local, Slurm, HTCondor), behind one protocol."""
