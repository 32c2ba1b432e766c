"""A basin set's losses and noise, and its basins: the synthetic problems of §3.1 and Appendix G.2.

Our reading of the Appendix G tables (the paper does not spell out `c`, `stddev_shift`, `wscale`
or `seed`; docs/synthetic.md shows that the text's claims hold under this reading):

    U_tr(θ)   = −lscale · log( Σ_k w_k · N(θ; m_k, σ_k²) + c )
    U_test(θ) = −lscale · log( Σ_k w_k·e^{wscale·ε_k} · N(θ + s; m_k, σ_k²) + c ),  ε ~ N(0, 1)

- `minima` m_k, `sigmas` σ_k, `weights` w_k: the mixture; w_k are *unnormalised* weights (the
  tables' weights do not sum to 1 and are meant as given: Fig. 4 left's [0.021, 0.1] makes −1
  deeper but narrower, Fig. 4 right's [0.019, 0.1] makes +1 deeper and wider).
- `c`: a floor added to the mixture density inside the log. It keeps U_tr finite and flat (at
  −lscale·log c) far from every basin, so the loss has a plateau and ρ → 0 at the range ends.
- `stddev_shift`: the train/test shift s itself, s = +stddev_shift (U_test(θ) = U_tr(θ + s), the
  constant shift of §3.1); a set may give `shift` to override it. Reading it as the spread of a
  random draw with `seed` instead would make the results depend on the random generator (numpy's
  default_rng(0) draws s = 0.013 for Fig. 4, too small for its test loss to fall with T).
- `wscale`, `seed`: a seeded log-normal jitter of the test weights (train and test differing by
  more than a shift). Every paper table has wscale = 0, so U_test(θ) = U_tr(θ + s) exactly and
  the seed has no effect there.
- `lscale`: multiplies the loss.
- `noise`: the SGD noise D(θ): constant D (the paper's Fig. 4/6 use constant D; D = 1 by
  default), D(θ) = D0 + alpha·U_tr(θ) (noise that grows with the loss, the paper's Appendix B.1
  example 1 with D0 = 0, alpha = 1), or, from Python, any function of θ.

Basins lie between neighbouring maxima of U_tr (or the grid ends), as in Appendix G.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from shiftcurv import ShiftcurvError
from shiftcurv.synthetic.settings import basin_set_specs, resolve_basin_set, resolve_noise

# --------------------------------------------------------------------------------------------
# Losses and noise
# --------------------------------------------------------------------------------------------

def mixture_loss(theta, minima, weights, sigmas, c: float, lscale: float, derivs: int = 0):
    """−lscale·log(Σ_k w_k N(θ; m_k, σ_k²) + c), the loss of an Appendix G.2 table (our reading,
    module docstring), and its first `derivs` θ-derivatives.

    Computed in log space with responsibilities r_k = w_k N_k / (Σ_j w_j N_j + c), so that far
    from every basin (N_k underflows) the loss is exactly the plateau −lscale·log c and the
    derivatives are exactly zero, never 0/0.
    """
    theta = np.asarray(theta, float)
    m = np.asarray(minima, float).reshape((-1,) + (1,) * theta.ndim)
    w = np.asarray(weights, float).reshape(m.shape)
    sg = np.asarray(sigmas, float).reshape(m.shape)
    z = (theta - m) / sg
    a = np.log(w) - 0.5 * z * z - np.log(sg * math.sqrt(2 * math.pi))
    lp = logsumexp(a, axis=0)
    lpc = np.logaddexp(lp, math.log(c)) if c > 0 else lp
    out = [-lscale * lpc]
    if derivs >= 1:
        r = np.exp(a - lpc)
        g = -z / sg                              # ∂ log N_k / ∂θ
        e1 = (r * g).sum(axis=0)                 # p'/(p + c)
        out.append(-lscale * e1)
        if derivs >= 2:
            e2 = (r * (g * g - 1.0 / sg**2)).sum(axis=0)   # p''/(p + c)
            out.append(-lscale * (e2 - e1 * e1))
    return out[0] if derivs == 0 else tuple(out)


@dataclass(frozen=True)
class Noise:
    """The SGD noise D(θ) (1-D: a positive scalar function). Eq. 5 needs D, D' (the ∂·D term)
    and, for the Laplace approximation, D''.

    kind "constant": D = D0. kind "loss": D = D0 + alpha·U_tr(θ). kind "function": D = fn(θ)
    (vectorised), derivatives by central differences unless `dfn`/`d2fn` are given.
    """

    kind: str
    D0: float           # kind "constant": D; kind "loss": D0 (nan for "function")
    alpha: float        # kind "loss" only (0 for "constant", nan for "function")
    fn: Callable | None = None
    dfn: Callable | None = None
    d2fn: Callable | None = None

    @classmethod
    def from_spec(cls, spec) -> Noise:
        """From a Noise, a callable D(θ), or a schema noise spec (defaults filled, checked)."""
        if isinstance(spec, Noise):
            return spec
        if callable(spec):
            return cls("function", D0=math.nan, alpha=math.nan, fn=spec)
        spec = resolve_noise(spec, "noise")
        if spec["kind"] == "constant":
            return cls("constant", D0=spec["D"], alpha=0.0)
        return cls("loss", D0=spec["D0"], alpha=spec["alpha"])

    @property
    def is_constant(self) -> bool:
        return self.kind == "constant" or (self.kind == "loss" and self.alpha == 0)

    def D(self, theta, U):
        if self.kind == "constant":
            return np.full(np.shape(theta), self.D0)
        if self.kind == "loss":
            return self.D0 + self.alpha * U
        return np.broadcast_to(np.asarray(self.fn(theta), float), np.shape(theta))

    def dD(self, theta, U, dU):
        if self.kind == "constant":
            return np.zeros(np.shape(theta))
        if self.kind == "loss":
            return self.alpha * dU
        if self.dfn is not None:
            return np.asarray(self.dfn(theta), float)
        h = 1e-4 * (1.0 + np.abs(theta))
        return (np.asarray(self.fn(theta + h)) - np.asarray(self.fn(theta - h))) / (2 * h)

    def d2D(self, theta, U, dU, d2U):
        if self.kind == "constant":
            return np.zeros(np.shape(theta))
        if self.kind == "loss":
            return self.alpha * d2U
        if self.d2fn is not None:
            return np.asarray(self.d2fn(theta), float)
        h = 1e-3 * (1.0 + np.abs(theta))
        f = self.fn
        return (np.asarray(f(theta + h)) - 2 * np.asarray(f(theta)) + np.asarray(f(theta - h))
                ) / h**2

    def potential(self, U):
        """F = ∫ U_tr'/D dθ (the T-independent part of Eq. 5's line integral), where it has a
        closed form; None for a general D(θ) (then it is integrated on the grid)."""
        if self.is_constant:
            return U / self.D0
        if self.kind == "loss":
            return np.log(self.D0 + self.alpha * U) / self.alpha
        return None


@dataclass(frozen=True)
class BasinSet:
    """One synthetic problem (§3.1, Appendix G.2): the mixture loss of the module docstring, the
    train/test shift, the SGD noise. Built by `from_spec`: the defaults are the schema's."""

    name: str
    minima: tuple
    weights: tuple
    sigmas: tuple
    c: float
    stddev_shift: float
    lscale: float
    wscale: float
    seed: int
    shift: float | None
    noise: Noise
    description: str

    @classmethod
    def from_spec(cls, name: str, spec: dict, noise=None) -> BasinSet:
        """From a config spec (the Appendix G keys; absent ones take the schema's defaults, and
        errors name `name`); `noise` (a callable D(θ) or Noise) overrides the spec's noise."""
        s = resolve_basin_set(spec, name)
        return cls(name=name, minima=tuple(s["minima"]), weights=tuple(s["weights"]),
                   sigmas=tuple(s["sigmas"]), c=s["c"], stddev_shift=s["stddev_shift"],
                   lscale=s["lscale"], wscale=s["wscale"], seed=s["seed"], shift=s["shift"],
                   noise=Noise.from_spec(s["noise"] if noise is None else noise),
                   description=s["description"])

    @property
    def s(self) -> float:
        """The train/test shift: U_test(θ) = U_tr(θ + s) (our reading: s = stddev_shift)."""
        return self.stddev_shift if self.shift is None else self.shift

    @property
    def test_weights(self) -> np.ndarray:
        w = np.asarray(self.weights, float)
        if self.wscale == 0:
            return w
        eps = np.random.default_rng(self.seed).standard_normal(len(w))
        return w * np.exp(self.wscale * eps)

    def U_tr(self, theta, derivs: int = 0):
        return mixture_loss(theta, self.minima, self.weights, self.sigmas, self.c, self.lscale,
                            derivs)

    def U_test(self, theta, derivs: int = 0):
        return mixture_loss(np.asarray(theta, float) + self.s, self.minima, self.test_weights,
                            self.sigmas, self.c, self.lscale, derivs)

    def D(self, theta):
        U = self.U_tr(theta) if self.noise.kind == "loss" else None
        return self.noise.D(np.asarray(theta, float), U)


def U_tr(bs: BasinSet, theta):
    """Train loss U_tr(θ) = −lscale·log(Σ_k w_k N(θ; m_k, σ_k²) + c)."""
    return bs.U_tr(theta)


def U_test(bs: BasinSet, theta):
    """Test loss U_test(θ) = U_tr(θ + s), the constant shift of §3.1 (with wscale = 0, as in
    every paper table)."""
    return bs.U_test(theta)


def basin_sets(resolved: dict) -> dict[str, BasinSet]:
    """name -> BasinSet for a resolved section: the chosen paper tables, then the user's sets."""
    return {n: BasinSet.from_spec(n, spec) for n, spec in basin_set_specs(resolved).items()}


# --------------------------------------------------------------------------------------------
# Basins: the minima of U_tr and the maxima between them
# --------------------------------------------------------------------------------------------

@dataclass
class Basins:
    """Basins of U_tr on a grid: basin k is theta_edges[k] .. theta_edges[k+1]."""

    theta_tr: np.ndarray        # the local minima θ_k^tr (refined off the grid)
    edges: np.ndarray           # grid indices nearest the boundaries, edges[0] = 0, [-1] = n−1
    theta_edges: np.ndarray     # the boundaries: the maxima of U_tr between minima (refined
    #                             off the grid, so basin masses converge as O(dx²)) and the ends

    @property
    def K(self) -> int:
        return len(self.theta_tr)

    def boundaries(self, theta=None) -> np.ndarray:
        return self.theta_edges


def _sign_runs(x: np.ndarray) -> np.ndarray:
    """sign(x), with exact zeros (derivative underflowed on a plateau) taking the last sign."""
    s = np.sign(x)
    idx = np.where(s != 0, np.arange(len(s)), 0)
    np.maximum.accumulate(idx, out=idx)
    out = s[idx]
    return out


def _newton_min(f2, x0, lo, hi, iters: int = 60):
    """Safeguarded Newton for a minimum: f2(x) -> (g, g'), steps clipped to [lo, hi] (downhill
    by 1e-3 where g' <= 0), vectorised over x."""
    x = np.array(x0, float)
    lo = np.broadcast_to(lo, x.shape).astype(float)
    hi = np.broadcast_to(hi, x.shape).astype(float)
    for _ in range(iters):
        g, h = f2(x)
        step = np.where(h > 0, -g / np.where(h > 0, h, 1.0), -np.sign(g) * 1e-3)
        xn = np.clip(x + step, lo, hi)
        done = np.abs(xn - x) < 1e-13 * (1 + np.abs(x))
        x = xn
        if np.all(done):
            break
    return x


def find_basins(bs: BasinSet, theta: np.ndarray) -> Basins:
    """Local minima of U_tr on the grid and the maxima between them: the basins of Appendix G.

    Uses the sign of the analytic U_tr' (not differences of U_tr), so float noise on the
    plateau (where U_tr is −lscale·log c to 16 digits) cannot create spurious basins.
    """
    _, dU = bs.U_tr(theta, derivs=1)
    sg = _sign_runs(dU)
    # leading exact zeros (left plateau) take the first nonzero sign
    first = np.flatnonzero(sg != 0)
    if first.size == 0:
        raise ShiftcurvError(f"basin set {bs.name}: U_tr is flat on the grid (no basin)")
    sg[: first[0]] = sg[first[0]]
    change = np.flatnonzero(sg[1:] != sg[:-1])         # sign flips between i and i+1
    mins = [i + 1 for i in change if sg[i] < 0]        # − → +
    maxs = [i for i in change if sg[i] > 0]            # + → −
    n = len(theta)
    if sg[0] > 0:                                      # rising from the left end: a minimum there
        mins.insert(0, 0)
    if sg[-1] < 0:
        mins.append(n - 1)
    mins = sorted(set(mins))
    edges = [0]
    for a, b in zip(mins[:-1], mins[1:], strict=True):
        between = [j for j in maxs if a <= j <= b]
        if between:
            # on a flat (underflowed) stretch, the middle of it
            j = between[0]
            zeros = np.flatnonzero(dU[a:b + 1] == 0) + a
            edges.append(int(np.median(zeros)) if zeros.size else j)
        else:
            edges.append((a + b) // 2)
    edges.append(n - 1)
    edges = np.asarray(edges)

    def f2(x):
        _, g, h = bs.U_tr(x, derivs=2)
        return g, h

    theta_edges = theta[edges].astype(float)
    for k in range(1, len(edges) - 1):          # the maximum between grid points: U_tr' = 0
        j = edges[k]
        a, b = theta[max(j - 1, 0)], theta[min(j + 1, n - 1)]
        ga, gb = bs.U_tr(a, derivs=1)[1], bs.U_tr(b, derivs=1)[1]
        if ga > 0 > gb:
            from scipy.optimize import brentq

            theta_edges[k] = brentq(lambda x: bs.U_tr(x, derivs=1)[1], a, b, xtol=1e-14)
    lo, hi = theta_edges[:-1], theta_edges[1:]
    theta_tr = _newton_min(f2, theta[mins], lo, hi)
    return Basins(theta_tr=theta_tr, edges=edges, theta_edges=theta_edges)

