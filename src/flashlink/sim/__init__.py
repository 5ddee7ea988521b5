"""Flash simulation payload: generation, reference simulation, flash models, ntuples, validation."""
