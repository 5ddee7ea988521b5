"""Flash simulation: per-particle models (Lamarr's decomposition) trained on the reference
detailed simulation, exported to ONNX + numpy, applied to whole event chunks.

Inference (:class:`FlashChain`, :func:`run_flash`, :func:`load_model`) needs numpy only
(onnxruntime optionally); training (:mod:`flashlink.sim.flash.train`) needs torch and zuko
(``pip install 'flashlink[flash]'``) and is imported only by the ``train`` command.
"""

from __future__ import annotations

__all__ = ["FlashChain", "FlashModel", "ModelSpec", "default_model_dir", "load_model", "run_flash"]

from flashlink.sim.flash.chain import FlashChain, default_model_dir, run_flash
from flashlink.sim.flash.models import ModelSpec
from flashlink.sim.flash.runtime import FlashModel, load_model
