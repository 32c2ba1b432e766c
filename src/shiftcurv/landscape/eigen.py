"""Extreme eigenvalues of a symmetric operator (the Hessian): λ_max (sharpness) and λ_min.

Lanczos builds an orthonormal basis Q_m = [q_1 … q_m] of the Krylov space span{q, Hq, …,
H^{m−1}q} by the three-term recurrence

    β_j q_{j+1} = H q_j − α_j q_j − β_{j−1} q_{j−1},     α_j = q_jᵀ H q_j,  β_j = ‖·‖,

(here with full reorthogonalisation), so that Q_mᵀ H Q_m = T_m, tridiagonal with α on the
diagonal and β beside it. The eigenvalues θ_i of T_m (Ritz values) approximate the extreme
eigenvalues of H; a Ritz pair (θ, Q_m s) has residual ‖H Q_m s − θ Q_m s‖ = β_m |e_mᵀ s|.

`lanczos` is our own: it stops on an a-posteriori error estimate and so needs fewer HVPs than
ARPACK for the same accuracy; `eigsh` (scipy's ARPACK) is offered as the cross-check.
`lambda_max` and `lambda_min` apply either to a `HessianOperator`, by default with the tolerance
its dtype supports (`default_tol`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from shiftcurv import ShiftcurvError
from shiftcurv.landscape.hessian import HessianOperator


@dataclass
class EigResult:
    """Eigenvalues from `lanczos` or `eigsh`, the matvecs spent and the stopping test's verdict."""
    eigenvalues: np.ndarray  # ascending for "SA", descending for "LA"
    eigenvectors: torch.Tensor | None  # (dim, k), in the basis dtype
    n_matvec: int
    converged: bool
    error_estimate: np.ndarray  # per eigenvalue: min(r, r²/gap), r the Ritz residual norm
    method: str


def _probe_vector(dim: int, seed: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """The seeded N(0, I) start vector (drawn in float64 on the CPU, whatever dtype/device)."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(dim, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)


def lanczos(matvec: Callable[[torch.Tensor], torch.Tensor], dim: int, *, k: int = 1,
            which: str = "LA", tol: float = 1e-8, max_iter: int = 200, seed: int = 0,
            v0: torch.Tensor | None = None, device=None, basis_dtype=torch.float64,
            return_vectors: bool = False) -> EigResult:
    """The k largest ("LA") or smallest ("SA") eigenvalues of a symmetric operator by Lanczos with
    full reorthogonalisation (classical Gram–Schmidt, twice). Memory: one basis vector of
    length p per iteration, in `basis_dtype` (float64; float32 halves it and suits f32 HVPs).

    Stops when, for each wanted Ritz value θ with residual norm r = β_j |e_jᵀ s| (there is an
    eigenvalue within r of θ), the estimate min(r, r²/gap) (gap: distance to the nearest other
    Ritz value; the error of a converged Ritz value is quadratic in r) is at most tol·scale AND θ
    moved by at most tol·scale in the last step (a guard: the Ritz gap can overstate the true
    gap early on). scale = |θ| for "LA" and the largest |Ritz value| for "SA" (smallest
    eigenvalues sit near 0 at a minimum, where a relative error means little). A breakdown
    (β ≈ 0: the Krylov space is invariant) makes the Ritz values exact.

    On H = diag(1, …, 6) the sixth step breaks down (the Krylov space is all of R⁶), so the Ritz
    values are the eigenvalues:

    >>> h = torch.arange(1.0, 7.0, dtype=torch.float64)
    >>> r = lanczos(lambda v: h * v, 6, k=2)
    >>> r.eigenvalues.round(12).tolist(), r.converged, r.n_matvec
    ([6.0, 5.0], True, 6)
    >>> lanczos(lambda v: h * v, 6, which="SA").eigenvalues.round(12).tolist()
    [1.0]
    """
    if which not in ("LA", "SA"):
        raise ShiftcurvError(f"which must be 'LA' or 'SA', got {which!r}")
    max_iter = int(min(max_iter, dim))
    q = (_probe_vector(dim, seed, device=device, dtype=basis_dtype) if v0 is None
         else v0.detach().to(device=device, dtype=basis_dtype).reshape(-1).clone())
    q /= q.norm()
    cap = min(max_iter, 32)
    Q = torch.empty(cap, dim, dtype=basis_dtype, device=q.device)
    alpha: list[float] = []
    beta: list[float] = []
    prev = None
    converged = False
    est = np.full(k, np.inf)
    theta = s = None
    for j in range(max_iter):
        if j == cap:  # grow the basis buffer geometrically
            cap = min(2 * cap, max_iter)
            Q = torch.cat([Q, torch.empty(cap - j, dim, dtype=Q.dtype, device=Q.device)])
        Q[j] = q
        w = matvec(q).to(basis_dtype).reshape(-1)
        a = float(q.dot(w))
        w = w - a * q - (beta[-1] * Q[j - 1] if j > 0 else 0.0)
        for _ in range(2):
            w -= Q[:j + 1].T @ (Q[:j + 1] @ w)
        b = float(w.norm())
        alpha.append(a)
        T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
        theta, s = np.linalg.eigh(T)
        m = j + 1
        idx = np.arange(m)[::-1][:k] if which == "LA" else np.arange(m)[:k]
        scale_all = max(np.abs(theta).max(), np.finfo(float).tiny)
        breakdown = b <= 1e-14 * scale_all * max(1.0, math.sqrt(dim))
        r = b * np.abs(s[-1, idx])
        gaps = np.array([np.min(np.abs(np.delete(theta, i) - theta[i])) if m > 1 else np.inf
                         for i in idx])
        est = np.minimum(r, np.where(gaps > 0, r**2 / np.maximum(gaps, 1e-300), r))
        scale = np.abs(theta[idx]) if which == "LA" else np.full(len(idx), scale_all)
        scale = np.maximum(scale, np.finfo(float).tiny)
        if breakdown:
            est = np.zeros(len(idx))
        if m >= k and (breakdown or (prev is not None and len(prev) == len(idx)
                                     and np.all(est <= tol * scale)
                                     and np.all(np.abs(theta[idx] - prev) <= tol * scale))):
            converged = True
            break
        prev = theta[idx]
        if breakdown:
            break
        beta.append(b)
        q = w / b
    m = len(alpha)
    idx = np.arange(m)[::-1][:k] if which == "LA" else np.arange(m)[:k]
    vecs = None
    if return_vectors:
        vecs = Q[:m].T @ torch.from_numpy(np.ascontiguousarray(s[:, idx])).to(Q)
    return EigResult(theta[idx].copy(), vecs, m, converged, np.asarray(est, dtype=float),
                     "lanczos")


def eigsh(op: HessianOperator, *, k: int = 1, which: str = "LA", tol: float = 1e-8,
          seed: int = 0, ncv: int | None = None, maxiter: int | None = None) -> EigResult:
    """The same by scipy's ARPACK (`scipy.sparse.linalg.eigsh`): the cross-check. ARPACK's tol is
    on the Ritz residual relative to |θ| (0: machine precision)."""
    from scipy.sparse.linalg import eigsh as _eigsh

    start = op.n_hvp
    v0 = _probe_vector(op.dim, seed).numpy()
    vals, vecs = _eigsh(op.linear_operator(), k=k, which=which, tol=tol, v0=v0, ncv=ncv,
                        maxiter=maxiter)
    order = np.argsort(vals)[::-1] if which == "LA" else np.argsort(vals)
    return EigResult(vals[order], torch.from_numpy(vecs[:, order]), op.n_hvp - start, True,
                     np.full(k, np.nan), "eigsh")


def default_tol(dtype: torch.dtype) -> float:
    """Eigenvalue tolerance the HVPs can support: 1e-8 in f64, 1e-5 in f32 (f32 HVPs carry
    ~1e-7 relative rounding noise, below which Lanczos cannot resolve)."""
    return 1e-8 if dtype == torch.float64 else 1e-5


def _basis_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float32, torch.float16, torch.bfloat16) \
        else torch.float64


def lambda_max(op: HessianOperator, *, tol: float | None = None, max_iter: int = 200,
               seed: int = 0, method: str = "lanczos") -> EigResult:
    """The largest Hessian eigenvalue (sharpness), λ_max(H) = max_{‖v‖=1} vᵀHv, by `lanczos`
    (basis in the operator's precision) or `eigsh`; tol default `default_tol(op.dtype)`."""
    tol = default_tol(op.dtype) if tol is None else tol
    if method == "eigsh":
        return eigsh(op, which="LA", tol=tol, seed=seed)
    return lanczos(op, op.dim, which="LA", tol=tol, max_iter=max_iter, seed=seed,
                   device=op.theta.device, basis_dtype=_basis_dtype(op.dtype))


def lambda_min(op: HessianOperator, *, tol: float | None = None, max_iter: int = 200,
               seed: int = 0, method: str = "lanczos") -> EigResult:
    """The smallest Hessian eigenvalue λ_min(H) = min_{‖v‖=1} vᵀHv (negative curvature in a
    flat valley); the tolerance is relative to the spectral radius estimate, since λ_min is near
    0 at a minimum."""
    tol = default_tol(op.dtype) if tol is None else tol
    if method == "eigsh":
        return eigsh(op, which="SA", tol=tol, seed=seed)
    return lanczos(op, op.dim, which="SA", tol=tol, max_iter=max_iter, seed=seed,
                   device=op.theta.device, basis_dtype=_basis_dtype(op.dtype))
