"""Particle identification: RICH likelihoods from Cherenkov photons, isMuon, calorimeter.

RICH: a track of momentum p and mass m radiates, if beta n > 1, N = N0 L sin^2(theta_c)
detected photons (Poisson) at cos(theta_c) = 1 / (n beta), each measured with a Gaussian
angular resolution, on top of a uniform background (a constant plus a share per track in the
event for overlapping rings). The photons are made from the true particle that crossed the
radiator; rings are given to the reconstructed track whose hits that particle made (ring
finding itself is not simulated: a documented simplification). The extended likelihood of
hypothesis h, with expected signal N_h and background b,

    ln L_h = -(N_h + b) + sum_i ln(N_h G(theta_i; theta_h, sigma) + b / theta_max),

gives DLL(h - pi) = ln L_h - ln L_pi (LHCb's RichDLL definition). More photons per cm give
more separation, which tests check.

isMuon: LHCb's momentum-dependent station requirement (3-6 GeV: M2 and M3; 6-10 GeV: M2, M3
and M4 or M5; > 10 GeV: all four) with hits inside a field of interest a + b/p around the track
extrapolated straight from the last T station (no field there).
"""

from __future__ import annotations

__all__ = ["MASSES", "is_muon", "rich_dll", "rich_photons"]

import numpy as np
import numpy.typing as npt

from flashlink.sim.detector.geometry import Muon, Rich

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: hypotheses of the likelihoods (GeV)
MASSES = {"e": 0.51099895e-3, "mu": 0.1056583755, "pi": 0.13957039, "K": 0.493677, "p": 0.93827209}


def _theta(rich: Rich, p: Array, mass: float | Array) -> tuple[Array, Array]:
    """Cherenkov angle and expected photon count for momentum p and mass."""
    n = 1.0 + rich.n_minus_1
    p = np.maximum(p, 1e-6)
    beta = p / np.sqrt(p**2 + np.asarray(mass) ** 2)
    cos_t = 1.0 / (n * beta)
    above = cos_t < 1.0
    theta = np.where(above, np.arccos(np.minimum(cos_t, 1.0)), 0.0)
    expected = np.where(
        above, rich.photons_per_cm * rich.length_mm / 10.0 * np.sin(theta) ** 2, 0.0
    )
    return theta, expected


def rich_photons(
    rng: np.random.Generator,
    rich: Rich,
    *,
    p_true: Array,
    mass: Array,
    inside: npt.NDArray[np.bool_],
    n_tracks: Array,
) -> tuple[IntArray, Array]:
    """Photon counts per track and the flat array of their measured Cherenkov angles."""
    theta, expected = _theta(rich, p_true, mass)
    n_sig = np.where(inside, rng.poisson(np.where(inside, expected, 0.0)), 0)
    bkg_mean = np.where(inside, rich.background + rich.background_per_track * n_tracks, 0.0)
    n_bkg = rng.poisson(bkg_mean)
    counts = n_sig + n_bkg
    sig = np.repeat(theta, n_sig) + rng.normal(0, rich.sigma_theta, int(n_sig.sum()))
    bkg = rng.uniform(0, rich.theta_max, int(n_bkg.sum()))
    # per track: signal photons then background photons
    angles = np.empty(int(counts.sum()))
    starts = (np.cumsum(counts) - counts).astype(np.int64)
    sig_pos = np.repeat(starts, n_sig) + _ranks(n_sig)
    bkg_pos = np.repeat(starts + n_sig, n_bkg) + _ranks(n_bkg)
    angles[sig_pos] = sig
    angles[bkg_pos] = bkg
    return counts.astype(np.int64), angles


def _ranks(counts: IntArray) -> IntArray:
    """0, 1, ..., c-1 for each count c, concatenated."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total) - starts


def rich_dll(
    rich: Rich,
    *,
    p_reco: Array,
    counts: IntArray,
    angles: Array,
    inside: npt.NDArray[np.bool_],
    n_tracks: Array,
) -> dict[str, Array]:
    """DLL(h - pi) for h in e, mu, K, p (zero for tracks outside the radiator)."""
    owner = np.repeat(np.arange(len(counts)), counts)
    bkg = np.where(inside, rich.background + rich.background_per_track * n_tracks, 1e-9)
    bkg_density = bkg / rich.theta_max
    lnl = {}
    for name, mass in MASSES.items():
        theta, expected = _theta(rich, p_reco, mass)
        g = np.exp(-0.5 * ((angles - theta[owner]) / rich.sigma_theta) ** 2) / (
            np.sqrt(2 * np.pi) * rich.sigma_theta
        )
        per_photon = np.log(expected[owner] * g + bkg_density[owner])
        total = np.bincount(owner, weights=per_photon, minlength=len(counts))
        lnl[name] = -(expected + bkg) + total
    return {h: np.where(inside, lnl[h] - lnl["pi"], 0.0) for h in ("e", "mu", "K", "p")}


def is_muon(
    muon: Muon,
    *,
    p: Array,
    pred_x: Array,
    pred_y: Array,
    station_hits: list[tuple[Array, Array]],
    track_event: IntArray,
    hit_events: list[IntArray],
) -> tuple[npt.NDArray[np.bool_], IntArray]:
    """isMuon and the number of stations with a hit in the field of interest.

    ``pred_x``/``pred_y``: (n, 4) track positions at the four stations; ``station_hits``: per
    station the (x, y) of its hits, with their events in ``hit_events``."""
    foi = muon.foi_a + muon.foi_b / np.maximum(p, 0.1)
    found = np.zeros((len(p), len(station_hits)), bool)
    for k, ((sx, sy), sev) in enumerate(zip(station_hits, hit_events, strict=True)):
        if len(sx) == 0:
            continue
        order = np.argsort(sev, kind="stable")
        hx, hy, hev = sx[order], sy[order], sev[order]
        lo = np.searchsorted(hev, track_event, "left")
        hi = np.searchsorted(hev, track_event, "right")
        for t in np.flatnonzero(hi > lo):
            sl = slice(lo[t], hi[t])
            near = (np.abs(hx[sl] - pred_x[t, k]) < foi[t]) & (
                np.abs(hy[sl] - pred_y[t, k]) < foi[t]
            )
            found[t, k] = bool(near.any())
    m2, m3, m4, m5 = (found[:, k] for k in range(4))
    low = (p > 3) & (p <= 6) & m2 & m3
    mid = (p > 6) & (p <= 10) & m2 & m3 & (m4 | m5)
    high = (p > 10) & m2 & m3 & m4 & m5
    return low | mid | high, found.sum(axis=1).astype(np.int64)
