"""HepMC3 ascii import and export (through ``pyhepmc``), so events move between flashlink,
other generators (Pythia's own HepMC3 writer) and other simulations (SQLamarr, Delphes).

Mapping to the event columns (:mod:`~flashlink.sim.generation.events`): our vertex number k is
HepMC vertex id -k; particles without a production vertex hang on the HepMC root vertex, whose
position is the event position (``E ... @ x y z t``). Export builds pyhepmc objects one by one
(``GenEventData`` arrays are read-only in pyhepmc 2.16); import reads the ``GenEventData`` numpy
record, so a file written here is read back with identical columns.
"""

from __future__ import annotations

__all__ = ["iter_hepmc", "write_hepmc"]

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from flashlink.sim.errors import EventFormatError, MissingDependencyError, StorageError
from flashlink.sim.generation.events import COLUMNS, EventChunk


def _pyhepmc() -> Any:
    try:
        import pyhepmc  # noqa: PLC0415 - optional dependency of the sim extra
    except ImportError as exc:  # pragma: no cover - the sim extra installs it
        raise MissingDependencyError(
            "pyhepmc is not installed; install the simulation extra: pip install 'flashlink[sim]'"
        ) from exc
    return pyhepmc


def _event(hp: Any, chunk: EventChunk, lo: int, hi: int) -> Any:
    c = {k: v[lo:hi].tolist() for k, v in chunk.columns.items()}
    n = hi - lo
    event = hp.GenEvent(hp.Units.GEV, hp.Units.MM)
    event.event_number = int(c["event_id"][0])
    # particles first, in index order, so that HepMC particle id = index + 1
    particles = []
    for i in range(n):
        particle = hp.GenParticle(
            hp.FourVector(c["px"][i], c["py"][i], c["pz"][i], c["e"][i]),
            c["pid"][i],
            c["status"][i],
        )
        particle.generated_mass = c["m"][i]
        event.add_particle(particle)
        particles.append(particle)
    prod, end = c["prod_vertex"], c["end_vertex"]
    n_vertices = max(max(prod, default=0), max(end, default=0))
    incoming: list[list[int]] = [[] for _ in range(n_vertices + 1)]
    outgoing: list[list[int]] = [[] for _ in range(n_vertices + 1)]
    for i in range(n):
        if end[i]:
            incoming[end[i]].append(i)
        if prod[i]:
            outgoing[prod[i]].append(i)
    for k in range(1, n_vertices + 1):
        if not outgoing[k]:
            raise EventFormatError(
                f"event {event.event_number}: vertex {k} has no outgoing particle; HepMC3 "
                "cannot store it"
            )
        i = outgoing[k][0]
        vertex = hp.GenVertex(hp.FourVector(c["vx"][i], c["vy"][i], c["vz"][i], c["vt"][i]))
        # the vertex id (-k) is its position in the event, so add it before attaching particles
        event.add_vertex(vertex)
        for j in incoming[k]:
            vertex.add_particle_in(particles[j])
        for j in outgoing[k]:
            vertex.add_particle_out(particles[j])
    roots = [i for i in range(n) if not prod[i]]
    if roots:
        # GenEvent has no position setter in pyhepmc; the GenEventData record has one
        data = hp.GenEventData()
        event.write_data(data)
        r = roots[0]
        data.event_pos = hp.FourVector(c["vx"][r], c["vy"][r], c["vz"][r], c["vt"][r])
        event = hp.GenEvent()
        event.read_data(data)
    return event


def write_hepmc(url: str, chunks: Iterable[EventChunk]) -> int:
    """Write events to a HepMC3 ascii file (a local path); return the number of events."""
    hp = _pyhepmc()
    if "://" in url:
        raise StorageError(f"HepMC3 files are written to local paths only, got {url!r}")
    n_events = 0
    try:
        with hp.open(url, "w") as out:
            for chunk in chunks:
                offsets = chunk.offsets()
                for lo, hi in itertools.pairwise(offsets):
                    out.write(_event(hp, chunk, int(lo), int(hi)))
                    n_events += 1
    except OSError as exc:
        raise StorageError(f"cannot write HepMC3 file {url!r}: {exc}") from exc
    return n_events


def _event_columns(hp: Any, event: Any) -> dict[str, Any]:
    data = hp.GenEventData()
    event.write_data(data)
    if event.momentum_unit != hp.Units.GEV or event.length_unit != hp.Units.MM:
        event.set_units(hp.Units.GEV, hp.Units.MM)
        event.write_data(data)
    particles, vertices = data.particles, data.vertices
    n = len(particles)
    links1, links2 = np.asarray(data.links1), np.asarray(data.links2)
    enters = links1 > 0
    prod = np.zeros(n, np.int32)
    end = np.zeros(n, np.int32)
    end[links1[enters] - 1] = -links2[enters]
    prod[links2[~enters] - 1] = -links1[~enters]
    pos = np.zeros((n, 4))
    origin = event.event_pos()
    pos[:] = [origin.x, origin.y, origin.z, origin.t]
    if len(vertices):
        vpos = np.stack([vertices[k] for k in ("x", "y", "z", "t")], axis=1)
        pos[prod > 0] = vpos[prod[prod > 0] - 1]
    # mother = lowest-index particle entering the production vertex
    first_in = np.full(len(vertices) + 1, n, np.int64)
    np.minimum.at(first_in, end[end > 0], np.flatnonzero(end > 0))
    mother = np.where(prod > 0, first_in[prod], -1)
    mom = np.stack([particles[k] for k in ("px", "py", "pz", "e")], axis=1)
    mass = np.where(
        particles["is_mass_set"],
        particles["mass"],
        np.sqrt(np.maximum(mom[:, 3] ** 2 - (mom[:, :3] ** 2).sum(axis=1), 0.0)),
    )
    return {
        "event_id": np.full(n, event.event_number, np.int64),
        "index": np.arange(n, dtype=np.int32),
        "pid": particles["pid"],
        "status": particles["status"],
        "px": mom[:, 0],
        "py": mom[:, 1],
        "pz": mom[:, 2],
        "e": mom[:, 3],
        "m": mass,
        "vx": pos[:, 0],
        "vy": pos[:, 1],
        "vz": pos[:, 2],
        "vt": pos[:, 3],
        "mother": mother.astype(np.int32),
        "prod_vertex": prod,
        "end_vertex": end,
    }


def iter_hepmc(url: str, chunk_events: int = 1000) -> Iterator[EventChunk]:
    """Read a HepMC3 (or HepMC2, detected by pyhepmc) ascii file in chunks of whole events.

    Event numbers are taken from the file; if they are not increasing (several files joined,
    or all zero), events are renumbered 0, 1, 2, ... so that every event is one run of rows.
    """
    hp = _pyhepmc()
    parts: list[dict[str, Any]] = []
    last_id = -1
    renumber = False
    count = 0
    try:
        reader = hp.open(url)
    except (OSError, RuntimeError) as exc:
        raise StorageError(f"cannot open HepMC file {url!r}: {exc}") from exc
    with reader as source:
        for event in source:
            if event is None:
                break
            cols = _event_columns(hp, event)
            if renumber or (cols["event_id"].size and int(cols["event_id"][0]) <= last_id):
                renumber = True
                cols["event_id"][:] = count
            if cols["event_id"].size:
                last_id = int(cols["event_id"][0])
            parts.append(cols)
            count += 1
            if len(parts) == chunk_events:
                yield EventChunk.from_columns(
                    {k: np.concatenate([p[k] for p in parts]) for k in COLUMNS}
                )
                parts = []
    if count == 0:
        raise EventFormatError(f"{url} holds no HepMC events")
    if parts:
        yield EventChunk.from_columns({k: np.concatenate([p[k] for p in parts]) for k in COLUMNS})
