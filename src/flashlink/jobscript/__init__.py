"""Job scripts: a pure translation of a Pod into one self-contained bash script."""
