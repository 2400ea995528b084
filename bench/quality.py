"""SSIM in numpy (Wang et al. 2004, 7x7 uniform window as scikit-image's default), mean over R, G and B."""

from __future__ import annotations

import numpy as np
from PIL import Image

WINDOW = 7
C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2


def _box_mean(a: np.ndarray) -> np.ndarray:
    """Mean over every WINDOW x WINDOW block (valid positions only), via an integral image."""
    s = np.zeros((a.shape[0] + 1, a.shape[1] + 1), np.float64)
    np.cumsum(np.cumsum(a, axis=0), axis=1, out=s[1:, 1:])
    w = WINDOW
    return (s[w:, w:] - s[:-w, w:] - s[w:, :-w] + s[:-w, :-w]) / (w * w)


def ssim_channel(x: np.ndarray, y: np.ndarray) -> float:
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    n = WINDOW * WINDOW
    cov_norm = n / (n - 1)  # sample covariance, as scikit-image
    ux, uy = _box_mean(x), _box_mean(y)
    vx = cov_norm * (_box_mean(x * x) - ux * ux)
    vy = cov_norm * (_box_mean(y * y) - uy * uy)
    vxy = cov_norm * (_box_mean(x * y) - ux * uy)
    num = (2 * ux * uy + C1) * (2 * vxy + C2)
    den = (ux * ux + uy * uy + C1) * (vx + vy + C2)
    return float(np.mean(num / den))


def ssim(a: Image.Image, b: Image.Image) -> float:
    """Mean SSIM over the RGB channels of two images of the same size."""
    if a.size != b.size:
        raise ValueError(f"sizes differ: {a.size} vs {b.size}")
    x = np.asarray(a.convert("RGB"))
    y = np.asarray(b.convert("RGB"))
    if min(a.size) < WINDOW:
        return float("nan")
    return float(np.mean([ssim_channel(x[..., c], y[..., c]) for c in range(3)]))
