"""relplot's smECE on count vectors over atoms: its reflected-Gaussian smoother mirrored.

The point value `point_metrics.smece` calls relplot itself; the bootstrap scores each
resample with `_weighted_smece`, which reproduces relplot's grid, smoother and bandwidth
search on (atom, count) weights, so that a resample costs a few milliseconds whatever n.
The constants below are relplot's own; tests/test_calibration.py checks the mirror
against relplot.smECE on the expanded questions.

Internal: the public path of the metrics is `lm_eval_semcal.core.calibration`.
"""

from __future__ import annotations

import numpy as np
import relplot
import relplot.kernels
import scipy.signal

# relplot's kernel smoother adds this to the estimated density (BaseKernelMixin.smooth),
# and its smECE bandwidth search stops below this bandwidth or after these many halvings.
_RELPLOT_DENSITY_EPS = 1e-4
_RELPLOT_MIN_BANDWIDTH = 0.001
_RELPLOT_BISECTION_STEPS = 10

# Above this many distinct (confidence, correct) pairs the smECE bootstrap smooths each
# resample on its own rather than through a pairs x grid basis (memory: pairs x 10/sigma).
_MAX_BASIS_ATOMS = 512


def _reflected_gaussian_smooth(
    conf: np.ndarray, weight_rows: np.ndarray, sigma: float, t: np.ndarray
) -> np.ndarray:
    """relplot's ReflectedGaussianKernel(sigma).apply(conf, row, t) for each weight row.

    The same grid, rounding, reflection and interpolation as relplot; only the
    convolution is done by FFT, which matters at the small bandwidths of a well
    calibrated model (grids of ~10,000 points, where relplot's direct convolution costs
    tens of milliseconds a call).
    """
    kernel = relplot.kernels.ReflectedGaussianKernel(sigma)
    points = max(2000, round(20 / sigma)) // 2 + 1
    grid = np.stack([relplot.kernels.smooth_round_to_grid(conf, row, points) for row in weight_rows])
    flipped = grid[:, ::-1]
    extended = np.concatenate([flipped[:, :-1], grid, flipped[:, 1:]], axis=1)
    smoothed = scipy.signal.fftconvolve(
        extended, kernel.kernel_ev(points)[None, :], mode="valid", axes=1
    )[:, points // 2 : points // 2 + points]
    return np.stack([relplot.kernels.interpolate(t, row) for row in smoothed])


def _weighted_smece(conf: np.ndarray, corr: np.ndarray, w: np.ndarray) -> np.ndarray:
    """relplot.smECE of every row of counts over the atoms, all rows in lockstep.

    relplot's smoother is linear in the per-question values it sums onto its grid, so
    with weights on A atoms the smoothed density and residual at bandwidth sigma are
    ``w @ B`` and ``(w * (conf - corr)) @ B``, where row a of the basis B is the smoother
    applied to a unit weight at atom a. relplot's bandwidth search (`search_param`:
    try 1, then ten bisection steps) is run for all rows at once; rows at the same
    bandwidth share one basis, and bootstrap resamples, being alike, mostly share their
    bandwidths. The point value `smece` calls relplot itself; the tests check this equals
    relplot.smECE on the expanded questions.
    """
    # Small corpora repeat resamples: score each distinct count vector once.
    distinct, inverse = np.unique(w, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    residual_weights = distinct * (conf - corr)
    # A basis row depends on its atom's confidence alone, and the atoms (c, 0) and (c, 1)
    # share one: each distinct confidence is smoothed once.
    levels, level_of = np.unique(conf, return_inverse=True)
    bases: dict[float, np.ndarray] = {}

    def smooth(rows: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
        t = np.linspace(0, 1, max(round(10 / sigma), relplot.config.smECE_mesh_pts))
        if len(conf) > _MAX_BASIS_ATOMS:
            # Continuous confidences (an atom per question): smooth row by row instead.
            pairs = [
                _reflected_gaussian_smooth(conf, np.stack([distinct[r], residual_weights[r]]), sigma, t)
                for r in rows
            ]
            return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        if sigma not in bases:
            bases[sigma] = _reflected_gaussian_smooth(levels, np.eye(len(levels)), sigma, t)[level_of]
        return distinct[rows] @ bases[sigma], residual_weights[rows] @ bases[sigma]

    def smooth_ece(rows: np.ndarray, sigma: float) -> np.ndarray:
        density, residual = smooth(rows, sigma)
        density = density + _RELPLOT_DENSITY_EPS
        residual = residual / density
        return np.sum(np.abs(residual) * density, axis=1) / np.sum(density, axis=1)

    def holds(rows: np.ndarray, alpha: float) -> np.ndarray:
        # relplot.metrics.smECE's predicate: the bandwidth is at most the smECE it gives.
        if alpha < _RELPLOT_MIN_BANDWIDTH:
            return np.ones(len(rows), dtype=bool)
        return alpha < smooth_ece(rows, alpha)

    n = len(distinct)
    everyone = np.arange(n)
    bandwidth = np.ones(n)
    searching = everyone[~holds(everyone, 1.0)]
    false_side, true_side = np.ones(n), np.zeros(n)
    for _ in range(_RELPLOT_BISECTION_STEPS):
        middle = (false_side + true_side) / 2
        for alpha in np.unique(middle[searching]):
            rows = searching[middle[searching] == alpha]
            ok = holds(rows, float(alpha))
            true_side[rows[ok]] = alpha
            false_side[rows[~ok]] = alpha
    bandwidth[searching] = false_side[searching]

    out = np.empty(n)
    for sigma in np.unique(bandwidth):
        rows = everyone[bandwidth == sigma]
        out[rows] = smooth_ece(rows, float(sigma))
    return out[inverse]

