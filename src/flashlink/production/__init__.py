"""Productions: a request becomes a Snakemake workflow of Pods, merged outputs and a report."""
