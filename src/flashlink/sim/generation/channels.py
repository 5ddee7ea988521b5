"""Signal channels of the particle gun and the Pythia settings that force them.

Pythia has no EvtGen here, so the decays use Pythia's own tables; a channel is forced by switching
every decay mode of the mother off and then on again only for the wanted products
(``onMode = off`` / ``onIfMatch``), which applies to the antiparticle with conjugate products.
B0 mixing is switched off so that B0 -> K+ pi- keeps its flavour at the decay.
"""

from __future__ import annotations

__all__ = ["CHANNELS", "Channel"]

from dataclasses import dataclass


@dataclass(frozen=True)
class Channel:
    """A gun particle and the forced decays of it and its intermediate resonances."""

    name: str
    pid: int
    description: str
    #: Pythia readString lines that force the decay chain
    settings: tuple[str, ...] = ()
    #: PDG ids of the final-state products of the forced chain (for the particle, not the anti)
    products: tuple[int, ...] = ()


def _force(pid: int, *products: int) -> tuple[str, ...]:
    return (f"{pid}:onMode = off", f"{pid}:onIfMatch = {' '.join(str(p) for p in products)}")


CHANNELS: dict[str, Channel] = {
    "Bu2JpsiK": Channel(
        "Bu2JpsiK",
        521,
        "B+ -> J/psi(-> mu+ mu-) K+",
        (*_force(521, 443, 321), *_force(443, 13, -13)),
        (13, -13, 321),
    ),
    "Bd2Kpi": Channel(
        "Bd2Kpi",
        511,
        "B0 -> K+ pi- (no mixing)",
        (*_force(511, 321, -211), "ParticleDecays:mixB = off"),
        (321, -211),
    ),
    "Dst2D0pi": Channel(
        "Dst2D0pi",
        413,
        "D*+ -> D0(-> K- pi+) pi+",
        (*_force(413, 421, 211), *_force(421, -321, 211)),
        (-321, 211, 211),
    ),
    "pi": Channel("pi", 211, "single pi+ (decays in flight in the detector)", (), (211,)),
    "K": Channel("K", 321, "single K+ (decays in flight in the detector)", (), (321,)),
    "p": Channel("p", 2212, "single proton", (), (2212,)),
    "mu": Channel("mu", 13, "single mu- ", (), (13,)),
    "e": Channel("e", 11, "single e-", (), (11,)),
}
