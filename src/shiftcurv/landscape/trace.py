"""The trace of the Hessian (or of any symmetric operator) from matrix-vector products alone.

    Hutchinson:  tr H = E[zᵀHz] for z with E[zzᵀ] = I (here Rademacher: z_i = ±1), so
                 tr H ≈ (1/m) Σ_j z_jᵀ H z_j,  Var(zᵀHz) = 2(‖H‖_F² − Σ_i H_ii²).
    Hutch++:     tr H = tr(QᵀHQ) + tr((I−QQᵀ) H (I−QQᵀ)) for any orthonormal Q; with
                 Q = orth(H S) from k random probes S, the first term is taken exactly and the
                 second, whose Frobenius norm is that of H without its top ~k directions, by
                 Hutchinson (Meyer, Musco, Musco & Woodruff 2021).

Both return a `TraceEstimate` with the standard error of their stochastic part. Closed forms: on
a diagonal H every zᵀHz = Σ_i H_ii z_i² = tr H, so Hutchinson is exact with stderr 0; on H of
rank ≤ k, Q spans the range of H, (I−QQᵀ)H = 0 and Hutch++ is exact (up to rounding).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from shiftcurv import ShiftcurvError


@dataclass
class TraceEstimate:
    """A trace estimate, the standard error of its stochastic part, and the matvecs it cost."""
    trace: float
    stderr: float  # standard error of the stochastic part
    n_matvec: int
    method: str


def _rademacher(dim: int, gen: torch.Generator) -> torch.Tensor:
    """A float64 vector of independent ±1, each with probability ½ (from `gen`)."""
    return torch.randint(0, 2, (dim,), generator=gen, dtype=torch.int8).to(torch.float64) \
        .mul_(2).sub_(1)


def hutchinson(matvec: Callable[[torch.Tensor], torch.Tensor], dim: int, *,
               n_probes: int = 100, seed: int = 0) -> TraceEstimate:
    """Hutchinson's estimator with m = n_probes Rademacher probes z_j (seeded by `seed`):

        tr H ≈ (1/m) Σ_j z_jᵀ H z_j,     stderr = std_j(z_jᵀHz_j) / √m,

    unbiased, each term of variance 2(‖H‖_F² − Σ_i H_ii²). Memory: two vectors.

    On a diagonal matrix every term is Σ_i H_ii z_i² = tr H, so the estimate is exact:

    >>> h = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    >>> t = hutchinson(lambda z: h * z, 4, n_probes=10)
    >>> t.trace, t.stderr, t.n_matvec
    (10.0, 0.0, 10)
    """
    gen = torch.Generator().manual_seed(int(seed))
    quad = []
    for _ in range(int(n_probes)):
        z = _rademacher(dim, gen)
        quad.append(float(z.dot(matvec(z).to(torch.float64).cpu())))
    quad = np.array(quad)
    se = float(quad.std(ddof=1) / math.sqrt(n_probes)) if n_probes > 1 else math.inf
    return TraceEstimate(float(quad.mean()), se, int(n_probes), "hutchinson")


def hutchpp(matvec: Callable[[torch.Tensor], torch.Tensor], dim: int, *, n_matvec: int = 99,
            seed: int = 0) -> TraceEstimate:
    """Hutch++ (Meyer, Musco, Musco & Woodruff 2021) with m = n_matvec products, k = ⌊m/3⌋:
    sketch Q = orth(H S) from k Rademacher probes S (k products), then

        tr H ≈ Σ_{i≤k} q_iᵀ H q_i + (1/(m−2k)) Σ_j g_jᵀ (I−QQᵀ) H (I−QQᵀ) g_j,

    the first sum exact (k products), the second Hutchinson on the deflated operator with the
    remaining m − 2k Rademacher probes g_j. stderr is that of the Hutchinson part (the low-rank
    part is exact given Q). Memory: 2k vectors of length p (float64).

    Exact for rank(H) ≤ k: here H = UUᵀ of rank 2, tr H = ‖U‖_F² = 17, with m = 6 (k = 2);
    Hutchinson with the same 6 products is off by its noise:

    >>> U = torch.tensor([[1.0, 0.0], [2.0, 1.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0],
    ...                   [0.0, 0.0]], dtype=torch.float64)
    >>> H = U @ U.T
    >>> t = hutchpp(lambda z: H @ z, 6, n_matvec=6)
    >>> round(t.trace, 10), t.stderr < 1e-12, t.n_matvec
    (17.0, True, 6)
    >>> round(hutchinson(lambda z: H @ z, 6, n_probes=6).trace, 2)
    17.67
    """
    if n_matvec < 3:
        raise ShiftcurvError("Hutch++ needs at least 3 matrix-vector products")
    k = n_matvec // 3
    gen = torch.Generator().manual_seed(int(seed))

    def mv(z):
        return matvec(z).to(torch.float64).cpu()

    Y = torch.stack([mv(_rademacher(dim, gen)) for _ in range(k)], dim=1)
    Q, _ = torch.linalg.qr(Y)
    del Y
    low_rank = sum(float(q.dot(mv(q))) for q in Q.T)
    quad = []
    for _ in range(n_matvec - 2 * k):
        g = _rademacher(dim, gen)
        g -= Q @ (Q.T @ g)
        quad.append(float(g.dot(mv(g))))
    quad = np.array(quad)
    se = float(quad.std(ddof=1) / math.sqrt(len(quad))) if len(quad) > 1 else math.inf
    return TraceEstimate(low_rank + float(quad.mean()), se, 2 * k + len(quad), "hutch++")
