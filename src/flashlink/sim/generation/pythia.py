"""Event generation with Pythia 8 (``pythia8mc``): full pp events or a particle gun.

The particle gun follows Pythia's own recipe (``main21``): with ``ProcessLevel:all = off`` the
event record is filled by hand with one particle and ``next()`` only decays it, through the
channel forced in :mod:`~flashlink.sim.generation.channels`. Measured on this 2-core machine
(benchmarks/sim_generation.py): ~10^4 gun events/s, ~10^2 b-bbar and ~2x10^2 min-bias events/s.

The vertex graph is built the way ``Pythia8ToHepMC3`` builds it: a particle's production vertex
is the end vertex of its first mother, created on first use with every mother that has no end
vertex yet as incoming. Particles without mothers (beams, the gun particle) sit at the event
origin. The conversion loops over particles in Python (pybind11 accessors, ~10 us per particle);
Pythia itself costs about as much for full events, so it is not the bottleneck.
"""

from __future__ import annotations

__all__ = ["PythiaGenerator", "generate"]

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from flashlink.sim.errors import GenerationError, MissingDependencyError
from flashlink.sim.generation.channels import CHANNELS
from flashlink.sim.generation.config import GunConfig, LogPSpectrum, PythiaConfig
from flashlink.sim.generation.events import EventChunk

#: Pythia accepts seeds 0..900000000 (Random:seed)
MAX_SEED = 900_000_000


def _import_pythia() -> Any:
    try:
        import pythia8mc  # noqa: PLC0415 - 30 MB extension, loaded only to generate
    except ImportError as exc:  # pragma: no cover - the sim extra installs it
        raise MissingDependencyError(
            "pythia8mc is not installed; install the simulation extra: pip install 'flashlink[sim]'"
        ) from exc
    return pythia8mc


class PythiaGenerator:
    """One initialised Pythia instance producing events for a config and a seed."""

    def __init__(self, config: GunConfig | PythiaConfig, seed: int) -> None:
        if not 0 <= seed <= MAX_SEED:
            raise GenerationError(f"seed {seed} is out of range; Pythia accepts 0..{MAX_SEED}")
        self.config = config
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        pythia8mc = _import_pythia()
        self._pythia = pythia8mc.Pythia("", False)
        settings = [
            "Print:quiet = on",
            "Random:setSeed = on",
            f"Random:seed = {seed}",
            "Next:numberCount = 0",
        ]
        if isinstance(config, GunConfig):
            settings += ["ProcessLevel:all = off", *CHANNELS[config.channel].settings]
        else:
            settings += [
                f"Beams:eCM = {config.ecm}",
                "Beams:allowVertexSpread = on",
                f"Beams:sigmaVertexX = {config.sigma_xy}",
                f"Beams:sigmaVertexY = {config.sigma_xy}",
                f"Beams:sigmaVertexZ = {config.sigma_z}",
            ]
            if config.mode == "minbias":
                settings.append("SoftQCD:nonDiffractive = on")
            else:
                settings += ["HardQCD:hardbbbar = on", f"PhaseSpace:pTHatMin = {config.pthat_min}"]
            settings += list(config.extra_settings)
        for line in settings:
            if not self._pythia.readString(line):
                raise GenerationError(
                    f"Pythia rejected the setting {line!r}; check its spelling against the "
                    "Pythia 8 settings manual"
                )
        if not self._pythia.init():
            raise GenerationError(f"Pythia failed to initialise with settings {settings}")

    def _gun_event(self, config: GunConfig) -> None:
        channel = CHANNELS[config.channel]
        rng = self._rng
        pid = channel.pid
        if config.charge_conjugate and rng.random() < 0.5:
            pid = -pid
        data = self._pythia.particleData
        mass = float(data.m0(pid))
        eta = rng.uniform(config.eta_min, config.eta_max)
        phi = rng.uniform(-math.pi, math.pi)
        spectrum = config.spectrum
        if isinstance(spectrum, LogPSpectrum):
            p = math.exp(rng.uniform(math.log(spectrum.p_min), math.log(spectrum.p_max)))
            pt = p / math.cosh(eta)
        else:
            pt = spectrum.pt_min + rng.exponential(spectrum.pt_mean)
        px, py, pz = pt * math.cos(phi), pt * math.sin(phi), pt * math.sinh(eta)
        energy = math.sqrt(px * px + py * py + pz * pz + mass * mass)
        x, y = rng.normal(0.0, config.sigma_xy, 2) if config.sigma_xy > 0 else (0.0, 0.0)
        z = rng.normal(0.0, config.sigma_z) if config.sigma_z > 0 else 0.0
        event = self._pythia.event
        event.reset()
        event.append(pid, 81, 0, 0, px, py, pz, energy, mass)
        event[1].vProd(float(x), float(y), float(z), 0.0)

    def next_event(self) -> Any:
        """Generate one event and return Pythia's event record."""
        for _attempt in range(10):
            if isinstance(self.config, GunConfig):
                self._gun_event(self.config)
            if self._pythia.next():
                return self._pythia.event
        raise GenerationError(
            f"Pythia failed 10 times in a row to generate an event for {self.config!r}"
        )

    def chunks(self, n_events: int, chunk_size: int, first_event: int = 0) -> Iterator[EventChunk]:
        """Yield ``n_events`` events in chunks of at most ``chunk_size`` events."""
        if n_events < 0 or chunk_size < 1:
            raise GenerationError(
                f"need n_events >= 0 and chunk_size >= 1, got {n_events} and {chunk_size}"
            )
        done = 0
        while done < n_events:
            todo = min(chunk_size, n_events - done)
            buffer = _ColumnBuffer()
            for k in range(todo):
                buffer.add_event(self.next_event(), first_event + done + k)
            done += todo
            yield buffer.chunk()


class _ColumnBuffer:
    """Accumulates events as Python lists; one numpy conversion per chunk, not per event.

    Per-event numpy arrays cost ~100 us of overhead, as much as a whole gun event, so the lists
    are kept for the chunk. Positions are read only for the first outgoing particle of each
    vertex (pybind11 accessors cost ~1 us per call, measured on this machine).
    """

    def __init__(self) -> None:
        self.event_id: list[int] = []
        self.index: list[int] = []
        self.pid: list[int] = []
        self.status: list[int] = []
        self.momenta: list[tuple[float, float, float, float, float]] = []
        self.positions: list[tuple[float, float, float, float]] = []
        self.mother: list[int] = []
        self.prod: list[int] = []
        self.end: list[int] = []

    def add_event(self, event: Any, event_id: int) -> None:
        particles = event.particles()[1:]  # entry 0 is Pythia's "system" pseudo-particle
        n = len(particles)
        end = [0] * (n + 1)  # by Pythia position
        prod = [0] * (n + 1)
        first_in = [-1]
        vertex_pos: list[tuple[float, float, float, float]] = [(0.0, 0.0, 0.0, 0.0)]
        origin: tuple[float, float, float, float] | None = None
        # local bindings: the interpreter overhead of this loop is ~40% of the conversion
        pid_append, status_append = self.pid.append, self.status.append
        momenta_append = self.momenta.append
        for i, particle in enumerate(particles, start=1):
            pid_append(particle.id())
            status_append(particle.statusHepMC())
            momenta_append(
                (particle.px(), particle.py(), particle.pz(), particle.e(), particle.m())
            )
            mothers = particle.motherList()
            if 0 in mothers:  # entry 0 is the system: the gun particle points at it
                mothers = [m for m in mothers if m > 0]
            if not mothers:
                if origin is None:
                    origin = (
                        particle.xProd(),
                        particle.yProd(),
                        particle.zProd(),
                        particle.tProd(),
                    )
                continue
            head = mothers[0]
            vertex = end[head]
            if vertex == 0:
                vertex = len(first_in)
                lowest = n + 1
                for m in mothers:
                    if end[m] == 0:
                        end[m] = vertex
                        lowest = min(lowest, m)
                first_in.append(lowest)
                vertex_pos.append(
                    (particle.xProd(), particle.yProd(), particle.zProd(), particle.tProd())
                )
            prod[i] = vertex
        vertex_pos[0] = origin or (0.0, 0.0, 0.0, 0.0)
        self.positions.extend(vertex_pos[v] for v in prod[1:])
        self.mother.extend(first_in[v] - 1 if v else -1 for v in prod[1:])
        self.prod.extend(prod[1:])
        self.end.extend(end[1:])
        self.event_id.extend([event_id] * n)
        self.index.extend(range(n))

    def chunk(self) -> EventChunk:
        momenta = np.asarray(self.momenta, dtype=np.float64).reshape(-1, 5)
        positions = np.asarray(self.positions, dtype=np.float64).reshape(-1, 4)
        columns: dict[str, Any] = {
            "event_id": self.event_id,
            "index": self.index,
            "pid": self.pid,
            "status": self.status,
            "mother": self.mother,
            "prod_vertex": self.prod,
            "end_vertex": self.end,
        }
        for k, name in enumerate(("px", "py", "pz", "e", "m")):
            columns[name] = momenta[:, k]
        for k, name in enumerate(("vx", "vy", "vz", "vt")):
            columns[name] = positions[:, k]
        return EventChunk.from_columns(columns)


def generate(
    config: GunConfig | PythiaConfig, n_events: int, seed: int, chunk_size: int = 1000
) -> Iterator[EventChunk]:
    """Generate ``n_events`` events in chunks; the same seed gives the same events."""
    yield from PythiaGenerator(config, seed).chunks(n_events, chunk_size)
