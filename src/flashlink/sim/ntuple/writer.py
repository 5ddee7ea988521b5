"""Write candidate ntuples: a flat ROOT TTree (uproot, no ROOT installation) and Parquet.

Branches (LHCb DecayTreeTuple names; ``<head>`` is B, B0 or Dst, ``<trk>`` a track prefix such as
``Kplus``, ``muplus``, ``piminus``):

* ``runNumber``: the production job's number (``--run-number``; 0 outside productions)
* ``eventNumber``: event number within the run (the generated file's event index)
* ``nTracks``, ``nPVs``: reconstructed tracks and primary vertices in the event
* ``<head>_M``: invariant mass from the tracks with their mass hypotheses (GeV)
* ``<head>_MERR``: its uncertainty from the tracks' momentum covariances (GeV)
* ``<head>_P``, ``_PT``, ``_ETA``: momentum, transverse momentum (GeV), pseudorapidity
* ``<head>_ENDVERTEX_{X,Y,Z}``: decay vertex (mm); ``_CHI2``, ``_NDOF`` its fit quality
* ``<head>_OWNPV_{X,Y,Z}``: the primary vertex with the smallest candidate IP chi2 (mm)
* ``<head>_IPCHI2_OWNPV``: impact-parameter chi2 of the candidate with respect to it
* ``<head>_FD_OWNPV``: flight distance (mm); ``_FDCHI2_OWNPV`` its chi2
* ``<head>_DIRA_OWNPV``: cosine of the angle between momentum and flight direction
* ``<head>_TAU``: decay time from the flight distance, PDG mass and momentum (ns)
* ``<head>_TRUEMATCH``: 1 if every track is a non-ghost of the right true species and the tracks
  descend from one head through the intermediates
* ``<res>_M``, ``_P``, ``_PT``: intermediate resonance (Jpsi, D0): mass, momenta;
* ``<res>_ENDVERTEX_CHI2``: and its own vertex fit (``_NDOF``)
* ``deltaM``: m(D*) - m(D0) for D*+ -> D0 pi+ (GeV)
* ``<trk>_P, _PT, _PX, _PY, _PZ``: track momentum at closest approach to the beam (GeV)
* ``<trk>_ETA``, ``_PHI``, ``_Q``: direction and charge
* ``<trk>_IP_OWNPV``: transverse impact parameter (mm); ``_IPCHI2_OWNPV`` its chi2
* ``<trk>_PIDK, _PIDp, _PIDe, _PIDmu``: RICH (and ECAL for e) DLL(h - pi)
* ``<trk>_isMuon``: muon-system isMuon; ``_RichPhotons`` photons; ``_CaloE`` ECAL (GeV)
* ``<trk>_TRACK_Type``: 1 long (only long tracks are combined)
* ``<trk>_TRACK_CHI2NDOF``, ``_TRACK_nDoF``: track-fit quality
* ``<trk>_TRACK_GHOST``: truth: 1 for a ghost track
* ``<trk>_TRUEID``, ``_TRUEP``: truth: PDG id and momentum of the matched particle

All branches are float64; the tree is called ``DecayTree``.
"""

from __future__ import annotations

__all__ = ["NtupleWriter"]

import importlib
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from flashlink.sim.errors import MissingDependencyError, StorageError
from flashlink.sim.io import ParquetSink, open_url

Table = dict[str, npt.NDArray[Any]]


class NtupleWriter:
    """Append candidate tables to ``<stem>.root`` (TTree ``DecayTree``) and/or ``.parquet``."""

    def __init__(
        self,
        url_stem: str,
        formats: tuple[str, ...] = ("root", "parquet"),
        metadata: dict[str, Any] | None = None,
    ) -> None:
        bad = [f for f in formats if f not in ("root", "parquet")]
        if bad or not formats:
            raise StorageError(
                f"ntuple formats {list(formats)} invalid; choose root and/or parquet"
            )
        self.url_stem = url_stem
        self.formats = formats
        self.entries = 0
        self._parquet = (
            ParquetSink(f"{url_stem}.parquet", metadata) if "parquet" in formats else None
        )
        self._root: Any = None
        self._tree: Any = None
        self._tmpdir: str | None = None
        self._root_path: str | None = None
        if "root" in formats:
            try:
                uproot = importlib.import_module("uproot")  # heavy: only for ROOT output
            except ImportError as exc:  # pragma: no cover - the sim extra installs it
                raise MissingDependencyError(
                    "uproot is needed for ROOT ntuples: pip install 'flashlink[sim]'"
                ) from exc
            target = f"{url_stem}.root"
            if "://" in target:
                # uproot needs a seekable local file; write there, upload on close
                self._tmpdir = tempfile.mkdtemp(prefix="flashlink-ntuple-")
                self._root_path = str(Path(self._tmpdir) / "ntuple.root")
            else:
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                self._root_path = target
            self._uproot = uproot

    def write(self, table: Table) -> None:
        n = len(next(iter(table.values()))) if table else 0
        if n == 0:
            return
        if self._parquet is not None:
            self._parquet.write(table)
        if self._root_path is not None:
            data = {k: np.asarray(v, dtype=np.float64) for k, v in table.items()}
            if self._root is None:
                # ZSTD level 1 (ROOT >= 6.20 reads it): 3.5x faster to write than uproot's
                # default ZLIB level 1 and 7 % smaller (measured on 5 x 41k gun candidates)
                self._root = self._uproot.recreate(
                    self._root_path, compression=self._uproot.ZSTD(1)
                )
                # mktree: a classic TTree (assigning a dict makes an RNTuple in uproot 5.7)
                self._tree = self._root.mktree("DecayTree", dict.fromkeys(data, np.float64))
            self._tree.extend(data)
        self.entries += n

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._root is not None:
            self._root.close()
            self._root = None
        if self._tmpdir is not None and self._root_path is not None:
            if Path(self._root_path).exists():
                with (
                    open(self._root_path, "rb") as src,
                    open_url(f"{self.url_stem}.root", "wb") as dst,
                ):
                    shutil.copyfileobj(src, dst)
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> NtupleWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
