"""flashlink: ML flash-simulation productions offloaded to HTCondor and Slurm through interLink.

The parts (see DESIGN.md) are sub-packages: ``kube`` (wire types), ``jobscript`` (Pod -> job
script), ``backends`` (local, Slurm, HTCondor), ``plugin`` (the interLink plugin service),
``images`` (the SIF image cache), ``sim`` (the simulation payload) and ``production``.
"""

from __future__ import annotations

__all__ = ["FlashlinkError", "__version__"]

__version__ = "0.1.0"

from flashlink.errors import FlashlinkError
