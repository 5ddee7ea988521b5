"""Flash simulation payload: generation, reference simulation, flash models, ntuples, validation.

The chain (each step streams chunks of events, so memory stays bounded):

1. :mod:`flashlink.sim.generation`: Pythia 8 full pp events at 13.6 TeV (``minbias``,
   ``bbbar``) or a particle gun with a forced signal decay (``Bu2JpsiK``, ``Bd2Kpi``,
   ``Dst2D0pi``, single ``pi``/``K``/``p``/``mu``/``e``), stored as columnar Parquet
   (:mod:`~flashlink.sim.generation.events` documents the columns) or HepMC3 ascii.
2. :mod:`flashlink.sim.detector`: the reference "detailed" simulation of an LHCb-like forward
   spectrometer described in ``detector/geometry.toml`` (step-by-step transport with
   multiple scattering, Landau energy loss, bremsstrahlung, hadronic absorption, decays in
   flight, Runge-Kutta through a field map, hits, noise) and its reconstruction (pattern
   recognition, Kalman fit, PV fit, RICH/muon/calorimeter PID). Output: ``tracks``,
   ``particles``, ``pvs`` and ``neutrals`` Parquet tables, the training data and truth of the
   flash models (:data:`flashlink.sim.detector.pipeline.OUTPUT_TABLES` documents the columns).
3. :mod:`flashlink.sim.ntuple`: signal candidates with vertex fits, written as a ROOT TTree
   ``DecayTree`` (uproot) and Parquet with LHCb-like branch names.

Command line: ``flashlink sim generate``, ``flashlink sim detailed``, ``flashlink sim ntuple``.
Inputs and outputs are local paths or fsspec URLs (``s3://`` needs ``s3fs`` installed). This
package imports nothing from flashlink but :mod:`flashlink.errors`; its errors are in
:mod:`flashlink.sim.errors`.
"""
