from __future__ import annotations

import functools
import itertools
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flashlink.sim.errors import EventFormatError, GenerationError, SimConfigError
from flashlink.sim.generation import (
    CHANNELS,
    EventChunk,
    concat_chunks,
    generate,
    iter_hepmc,
    parse_generator_config,
    write_hepmc,
)
from flashlink.sim.io import ParquetSink, iter_events, read_metadata


@functools.cache
def _particle_data() -> Any:
    import pythia8mc

    return pythia8mc.Pythia("", False).particleData


def _charge(pids: np.ndarray) -> np.ndarray:
    data = _particle_data()
    return np.array([data.charge(int(p)) for p in pids])


def _gun(channel: str, n: int = 300, seed: int = 11, **extra: object) -> EventChunk:
    config = parse_generator_config({"mode": "gun", "channel": channel, **extra})
    return concat_chunks(list(generate(config, n, seed, chunk_size=128)))


def test_same_seed_same_events_other_seed_other_events() -> None:
    a, b, c = _gun("Dst2D0pi", 50, 5), _gun("Dst2D0pi", 50, 5), _gun("Dst2D0pi", 50, 6)
    for name in a.columns:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["px"], c["px"])


@pytest.mark.parametrize("channel", ["Bu2JpsiK", "Bd2Kpi", "Dst2D0pi"])
def test_forced_decays_conserve_momentum_and_charge(channel: str) -> None:
    chunk = _gun(channel)
    offsets = chunk.offsets()
    final = chunk["status"] == 1
    wanted = sorted(abs(p) for p in CHANNELS[channel].products)
    for lo, hi in itertools.pairwise(offsets):
        rows = slice(lo, hi)
        fs = final[rows]
        p4 = np.stack([chunk[k][rows] for k in ("px", "py", "pz", "e")], axis=1)
        np.testing.assert_allclose(p4[fs].sum(axis=0), p4[0], atol=1e-6 * p4[0, 3])
        assert _charge(chunk["pid"][rows][fs]).sum() == pytest.approx(
            _charge(chunk["pid"][rows][:1])[0]
        )
        # only the forced products (photons from FSR aside) are in the final state
        assert sorted(abs(p) for p in chunk["pid"][rows][fs] if p != 22) == wanted


def test_gun_spectra_respect_the_configured_ranges() -> None:
    chunk = _gun(
        "pi",
        2000,
        spectrum={"kind": "log_p", "p_min": 3.0, "p_max": 30.0},
        eta_min=2.5,
        eta_max=4.0,
    )
    p = np.sqrt(chunk["px"] ** 2 + chunk["py"] ** 2 + chunk["pz"] ** 2)
    eta = np.arctanh(chunk["pz"] / p)
    assert p.min() >= 3.0
    assert p.max() <= 30.0
    assert eta.min() >= 2.5
    assert eta.max() <= 4.0
    # flat in log p: the median sits at the geometric mean
    assert np.median(p) == pytest.approx(np.sqrt(90.0), rel=0.08)
    assert 0.4 < np.mean(chunk["pid"] > 0) < 0.6  # charge conjugation on


def test_minbias_events_conserve_four_momentum() -> None:
    chunk = concat_chunks(list(generate(parse_generator_config({"mode": "minbias"}), 3, 1)))
    offsets = chunk.offsets()
    assert chunk.n_events == 3
    for lo, hi in itertools.pairwise(offsets):
        fs = chunk["status"][lo:hi] == 1
        total = [chunk[k][lo:hi][fs].sum() for k in ("px", "py", "pz", "e")]
        np.testing.assert_allclose(total, [0, 0, 0, 13600.0], atol=1e-3)
        assert _charge(chunk["pid"][lo:hi][fs]).sum() == pytest.approx(2.0)
        # every decayed particle has an end vertex, and its daughters point back to it
        decayed = np.flatnonzero(chunk["status"][lo:hi] == 2)
        assert np.all(chunk["end_vertex"][lo:hi][decayed] > 0)


def test_hepmc_round_trip_is_identical(tmp_path: Path) -> None:
    events = list(generate(parse_generator_config({"mode": "bbbar"}), 4, 2, chunk_size=3))
    events += list(generate(parse_generator_config({"mode": "gun"}), 5, 2, chunk_size=5))
    events[-1] = EventChunk.from_columns(
        {**events[-1].columns, "event_id": events[-1]["event_id"] + 100}
    )
    path = str(tmp_path / "events.hepmc3")
    assert write_hepmc(path, events) == 9
    back = concat_chunks(list(iter_hepmc(path, chunk_events=4)))
    original = concat_chunks(events)
    for name in original.columns:
        np.testing.assert_array_equal(back[name], original[name], err_msg=name)


def test_reads_a_file_written_by_pythias_hepmc3_interface() -> None:
    # The hepmc3 wheel ships an example made by Pythia 8 (e+e- -> Z, Pythia8ToHepMC3).
    path = Path(sysconfig.get_paths()["data"]) / "share/doc/HepMC3-3.3.1/examples"
    path = path / "RootIOExample/example.hepmc3"
    chunks = list(iter_hepmc(str(path), chunk_events=40))
    chunk = concat_chunks(chunks)
    assert [c.n_events for c in chunks] == [40, 40, 20]
    offsets = chunk.offsets()
    for lo, hi in itertools.pairwise(offsets):
        fs = chunk["status"][lo:hi] == 1
        beams = chunk["status"][lo:hi] == 4
        for k in ("px", "py", "pz", "e"):
            assert chunk[k][lo:hi][fs].sum() == pytest.approx(
                chunk[k][lo:hi][beams].sum(), abs=1e-3
            )


def test_parquet_streams_whole_events_in_chunks(tmp_path: Path) -> None:
    url = str(tmp_path / "sub" / "events.parquet")
    chunks = list(generate(parse_generator_config({"mode": "gun"}), 50, 4, chunk_size=7))
    with ParquetSink(url, {"seed": 4}) as sink:
        for chunk in chunks:
            sink.write(chunk.columns)
    back = list(iter_events(url, chunk_events=10))
    assert [c.n_events for c in back] == [10] * 5
    for name, col in concat_chunks(chunks).columns.items():
        np.testing.assert_array_equal(concat_chunks(back)[name], col)
    assert read_metadata(url) == {"seed": 4}


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"mode": "gun", "channel": "B2nothing"}, "B2nothing"),
        ({"mode": "gun", "eta_min": 5.0, "eta_max": 2.0}, "eta_max"),
        ({"mode": "gun", "spectrum": {"kind": "log_p", "p_min": 10, "p_max": 1}}, "p_max"),
        ({"mode": "minbias", "ecm": -1}, "ecm"),
        ({"mode": "minbias", "colour": "red"}, "colour"),
        ({"channel": "pi"}, "mode"),
        ({"mode": "ttbar"}, "ttbar"),
    ],
)
def test_bad_config_fields_are_named(config: dict[str, object], fragment: str) -> None:
    with pytest.raises(SimConfigError, match=fragment):
        parse_generator_config(config)


def test_pythia_errors_are_reported() -> None:
    bad = parse_generator_config({"mode": "minbias", "extra_settings": ["Foo:bar = 1"]})
    with pytest.raises(GenerationError, match="Foo:bar"):
        next(generate(bad, 1, 1))
    with pytest.raises(GenerationError, match="seed"):
        next(generate(parse_generator_config({"mode": "gun"}), 1, -3))


def test_bad_event_tables_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(EventFormatError, match="missing"):
        EventChunk.from_columns({"event_id": [1]})
    url = tmp_path / "junk.parquet"
    url.write_text("not parquet")
    with pytest.raises(EventFormatError, match="not a Parquet file"):
        next(iter_events(str(url)))
