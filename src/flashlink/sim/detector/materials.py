"""Interactions of particles with thin and thick material, vectorised over particles.

* Multiple scattering: the Highland formula (PDG, "Passage of particles through matter",
  eq. 34.15) with the z^2/beta^2 term inside the logarithm (Lynch & Dahl 1991); angles are
  Gaussian with that width (the single-scattering tail is not simulated, so the Kalman fit's
  noise model is exact for the transport and its pulls are testable).
* Ionisation: the Landau most-probable loss (PDG eq. 34.12) with the density-effect
  correction in its high-energy limit, and Landau-like fluctuations sampled from the Moyal
  distribution (lambda = -ln(chi2_1) has the Moyal density with mode 0 and mean
  gamma_E + ln 2), so loss = Delta_p + xi * lambda.
* Electron bremsstrahlung: Bethe-Heitler, the fraction of energy kept is exp(-Y) with
  Y ~ Gamma(t / ln 2) for a thickness of t radiation lengths.
* Hadronic absorption: probability 1 - exp(-s L / lambda_I) with a per-species factor s
  (pion and kaon inelastic cross sections on nuclei are ~80% and ~70% of the nucleon one).
"""

from __future__ import annotations

__all__ = [
    "ELECTRON_MASS",
    "MOYAL_MEAN",
    "MOYAL_VARIANCE",
    "absorption_probability",
    "bremsstrahlung_fraction",
    "highland",
    "landau_parameters",
    "sample_moyal",
]

import math

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
ELECTRON_MASS = 0.51099895e-3
_K = 0.307075e-3  # GeV cm2 / mol
MOYAL_MEAN = float(np.euler_gamma + math.log(2.0))
MOYAL_VARIANCE = math.pi**2 / 2.0


def highland(p: Array, beta: Array, charge: Array, x0: Array) -> Array:
    """RMS projected scattering angle (rad) after ``x0`` radiation lengths (along the path)."""
    t = np.maximum(x0, 1e-12)
    z2 = charge * charge
    return (
        13.6e-3
        / (beta * p)
        * np.abs(charge)
        * np.sqrt(t)
        * (1.0 + 0.038 * np.log(t * z2 / (beta * beta)))
    )


def landau_parameters(
    beta_gamma: Array,
    charge: Array,
    *,
    z_over_a: Array,
    ion: Array,
    grammage: Array,
    density: Array,
) -> tuple[Array, Array]:
    """Most probable energy loss and the Landau width xi (both GeV) for ``grammage`` g/cm2."""
    bg2 = beta_gamma * beta_gamma
    beta2 = bg2 / (1.0 + bg2)
    xi = 0.5 * _K * z_over_a * charge * charge * grammage / beta2
    plasma = 28.816e-9 * np.sqrt(density * z_over_a)  # GeV
    delta = np.maximum(0.0, 2.0 * np.log(np.sqrt(bg2)) + 2.0 * np.log(plasma / ion) - 1.0)
    mpv = xi * (
        np.log(2.0 * ELECTRON_MASS * bg2 / ion)
        + np.log(np.maximum(xi, 1e-15) / ion)
        + 0.2
        - beta2
        - delta
    )
    return np.maximum(mpv, 0.0), xi


def sample_moyal(rng: np.random.Generator, n: int) -> Array:
    """Standard Moyal variates (mode 0), a closed-form stand-in for the Landau distribution."""
    return -np.log(np.maximum(rng.chisquare(1.0, n), 1e-300))


def bremsstrahlung_fraction(rng: np.random.Generator, x0: Array) -> Array:
    """Fraction of its energy an electron keeps after ``x0`` radiation lengths (Bethe-Heitler)."""
    shape = np.maximum(x0, 1e-12) / math.log(2.0)
    return np.exp(-rng.gamma(shape))


def absorption_probability(lambda_frac: Array, species_factor: Array) -> Array:
    """Probability that a hadron interacts (and is absorbed) in ``lambda_frac`` lambda_I."""
    return -np.expm1(-lambda_frac * species_factor)
