"""Synthetic 1-D basins: the paper's Fig. 4 and Fig. 6 (§3.1, Appendix G.2), with a check.

A basin set is a 1-D train loss built from a Gaussian mixture, and a test loss that is the train
loss shifted by a constant s. The SGD steady state (Eq. 5) is computed exactly on a θ grid, its
basin probabilities and expected train/test losses are integrated, compared with the Gaussian-
mixture (Laplace) approximations of Eq. 6, Eq. 4 and Eq. 8, and with an Euler–Maruyama
simulation of the SGD diffusion (Eq. 11).

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

Only numpy and scipy are imported here at module level: the Snakefile imports `figure_names`
at parse time. xarray is imported inside `sweep`.
"""

from __future__ import annotations

import copy
import json
import math
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

from shiftcurv import ShiftcurvError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# Appendix G, "Figure 4 and G.2.6": the four parameter tables, as printed.
PAPER_BASIN_SETS: dict[str, dict] = {
    "fig4_left": {"minima": [-1.0, 1.0], "weights": [0.021, 0.1], "sigmas": [0.1, 0.5],
                  "c": 0.001, "stddev_shift": 0.1, "lscale": 1.0, "wscale": 0.0, "seed": 0,
                  "description": "Fig. 4 left: -1 deeper but narrower than +1"},
    "fig4_right": {"minima": [-1.0, 1.0], "weights": [0.019, 0.1], "sigmas": [0.1, 0.5],
                   "c": 0.001, "stddev_shift": 0.1, "lscale": 1.0, "wscale": 0.0, "seed": 0,
                   "description": "Fig. 4 right: +1 deeper and wider than -1"},
    "fig6_left": {"minima": [0.0], "weights": [0.1], "sigmas": [0.1],
                  "c": 0.001, "stddev_shift": 0.03, "lscale": 1.0, "wscale": 0.0, "seed": 0,
                  "description": "Fig. 6 left: one basin"},
    "fig6_right": {"minima": [-1.0, 0.0, 1.0], "weights": [0.1, 0.051, 0.3],
                   "sigmas": [0.1, 0.05, 0.3],
                   "c": 0.001, "stddev_shift": 0.1, "lscale": 1.0, "wscale": 0.0, "seed": 0,
                   "description": "Fig. 6 right: 0 deepest and narrowest; -1 and +1 equally "
                                  "deep, +1 wider"},
}

BASIN_SET_DEFAULTS = {"c": 0.001, "stddev_shift": 0.1, "shift": None, "lscale": 1.0,
                      "wscale": 0.0, "seed": 0, "noise": {"kind": "constant", "D": 1.0},
                      "description": ""}

# Not from the paper: Fig. 4 left's trade-off with low barriers, so that the Eq. 11 simulation
# equilibrates between basins at temperatures around the optimum (for the paper's tables the
# relaxation time there is 1e10 to 1e100 time units). Also a template for users' own sets.
EXAMPLE_BASIN_SETS: dict[str, dict] = {
    "shallow": {"minima": [-0.5, 0.5], "weights": [0.05, 0.1], "sigmas": [0.15, 0.45],
                "c": 0.05, "stddev_shift": 0.25, "lscale": 1.0, "wscale": 0.0, "seed": 0,
                "noise": {"kind": "constant", "D": 1.0},
                "description": "not from the paper: -0.5 deeper but narrower, low barriers "
                               "(simulation check)"},
}

DEFAULT_SETTINGS: dict = {
    "paper_sets": list(PAPER_BASIN_SETS),
    "basin_sets": EXAMPLE_BASIN_SETS,
    "temperatures": {"min": 1.0e-3, "max": 3.0, "num": 36},
    "theta": {"min": -3.0, "max": 3.0, "num": 4801},
    "simulation": {"enabled": True, "walkers": 3000, "dt_factor": 0.05, "max_steps": 40000,
                   "burn_in": 5.0, "sample": 3.0, "snapshots": 30, "bins": 120,
                   "max_temperatures": 6, "seed": 0},
}


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------

def _num(value, key: str, *, positive: bool = False, nonneg: bool = False) -> float:
    # YAML 1.1 reads 1e-3 (no dot) as a string: accept numeric strings.
    if isinstance(value, bool):
        raise ShiftcurvError(f"{key}: expected a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ShiftcurvError(f"{key}: expected a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ShiftcurvError(f"{key}: must be finite, got {value!r}")
    if positive and x <= 0:
        raise ShiftcurvError(f"{key}: must be > 0, got {value!r}")
    if nonneg and x < 0:
        raise ShiftcurvError(f"{key}: must be >= 0, got {value!r}")
    return x


def _int(value, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ShiftcurvError(f"{key}: expected an integer, got {value!r}")
    try:
        x = float(value)
    except ValueError:
        raise ShiftcurvError(f"{key}: expected an integer, got {value!r}") from None
    if not x.is_integer() or x < minimum:
        raise ShiftcurvError(f"{key}: expected an integer >= {minimum}, got {value!r}")
    return int(x)


def _numlist(value, key: str, *, positive: bool = False) -> list[float]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ShiftcurvError(f"{key}: expected a non-empty list of numbers, got {value!r}")
    return [_num(v, f"{key}[{i}]", positive=positive) for i, v in enumerate(value)]


def _check_keys(d, allowed, key: str) -> None:
    if not isinstance(d, dict):
        raise ShiftcurvError(f"{key}: expected a mapping, got {d!r}")
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise ShiftcurvError(f"{key}: unknown key {unknown[0]!r} (allowed: "
                             f"{', '.join(sorted(allowed))})")


def resolve_noise(spec, key: str) -> dict:
    if spec is None:
        spec = {"kind": "constant", "D": 1.0}
    if isinstance(spec, (int, float, str)) and not isinstance(spec, bool):
        spec = {"kind": "constant", "D": spec}
    _check_keys(spec, {"kind", "D", "D0", "alpha"}, key)
    kind = spec.get("kind", "constant")
    if kind == "constant":
        _check_keys(spec, {"kind", "D"}, key)
        return {"kind": "constant", "D": _num(spec.get("D", 1.0), f"{key}.D", positive=True)}
    if kind == "loss":
        _check_keys(spec, {"kind", "D0", "alpha"}, key)
        return {"kind": "loss", "D0": _num(spec.get("D0", 1.0), f"{key}.D0", nonneg=True),
                "alpha": _num(spec.get("alpha", 1.0), f"{key}.alpha", nonneg=True)}
    raise ShiftcurvError(f"{key}.kind: expected 'constant' or 'loss', got {kind!r}")


def resolve_basin_set(spec, key: str) -> dict:
    """Fill defaults into one basin-set spec and check it (errors name `key`)."""
    allowed = {"minima", "weights", "sigmas"} | set(BASIN_SET_DEFAULTS)
    _check_keys(spec, allowed, key)
    for k in ("minima", "weights", "sigmas"):
        if k not in spec:
            raise ShiftcurvError(f"{key}: lacks {k!r}")
    out = {**copy.deepcopy(BASIN_SET_DEFAULTS), **copy.deepcopy(spec)}
    out["minima"] = _numlist(out["minima"], f"{key}.minima")
    out["weights"] = _numlist(out["weights"], f"{key}.weights", positive=True)
    out["sigmas"] = _numlist(out["sigmas"], f"{key}.sigmas", positive=True)
    if not len(out["minima"]) == len(out["weights"]) == len(out["sigmas"]):
        raise ShiftcurvError(f"{key}: minima, weights and sigmas must have the same length")
    out["c"] = _num(out["c"], f"{key}.c", nonneg=True)
    out["stddev_shift"] = _num(out["stddev_shift"], f"{key}.stddev_shift")
    if out["shift"] is not None:
        out["shift"] = _num(out["shift"], f"{key}.shift")
    out["lscale"] = _num(out["lscale"], f"{key}.lscale", positive=True)
    out["wscale"] = _num(out["wscale"], f"{key}.wscale", nonneg=True)
    out["seed"] = _int(out["seed"], f"{key}.seed", 0)
    out["noise"] = resolve_noise(out["noise"], f"{key}.noise")
    if not isinstance(out["description"], str):
        raise ShiftcurvError(f"{key}.description: expected a string")
    return out


def resolve_settings(settings: dict | None) -> dict:
    """The config's `synthetic` section with defaults filled in and every key checked.

    Bad values raise ShiftcurvError with one line naming the key (e.g. `synthetic.theta.num`).
    """
    s = {} if settings is None else settings
    _check_keys(s, DEFAULT_SETTINGS, "synthetic")
    out = copy.deepcopy(DEFAULT_SETTINGS)
    paper = s.get("paper_sets", out["paper_sets"])
    if not isinstance(paper, list) or any(p not in PAPER_BASIN_SETS for p in paper):
        raise ShiftcurvError(f"synthetic.paper_sets: expected a list from "
                             f"{', '.join(PAPER_BASIN_SETS)}, got {paper!r}")
    out["paper_sets"] = list(dict.fromkeys(paper))
    user = s.get("basin_sets", DEFAULT_SETTINGS["basin_sets"]) or {}
    if not isinstance(user, dict):
        raise ShiftcurvError("synthetic.basin_sets: expected a mapping name -> basin set")
    out["basin_sets"] = {}
    for name, spec in user.items():
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ShiftcurvError(f"synthetic.basin_sets: bad name {name!r} (letters, digits, "
                                 "_ . - only)")
        out["basin_sets"][name] = resolve_basin_set(spec, f"synthetic.basin_sets.{name}")
    if not out["paper_sets"] and not out["basin_sets"]:
        raise ShiftcurvError("synthetic.paper_sets: no basin sets (give paper_sets or "
                             "basin_sets)")

    temps = s.get("temperatures", out["temperatures"])
    if isinstance(temps, list):
        t = sorted(set(_numlist(temps, "synthetic.temperatures", positive=True)))
        out["temperatures"] = t
    else:
        _check_keys(temps, {"min", "max", "num"}, "synthetic.temperatures")
        t = {**DEFAULT_SETTINGS["temperatures"], **temps}
        lo = _num(t["min"], "synthetic.temperatures.min", positive=True)
        hi = _num(t["max"], "synthetic.temperatures.max", positive=True)
        num = _int(t["num"], "synthetic.temperatures.num", 1)
        if hi < lo or (num > 1 and hi == lo):
            raise ShiftcurvError("synthetic.temperatures.max: must be > min")
        out["temperatures"] = {"min": lo, "max": hi, "num": num}

    th = s.get("theta", {})
    _check_keys(th, {"min", "max", "num"}, "synthetic.theta")
    th = {**DEFAULT_SETTINGS["theta"], **th}
    lo = _num(th["min"], "synthetic.theta.min")
    hi = _num(th["max"], "synthetic.theta.max")
    if hi <= lo:
        raise ShiftcurvError("synthetic.theta.max: must be > synthetic.theta.min")
    out["theta"] = {"min": lo, "max": hi, "num": _int(th["num"], "synthetic.theta.num", 101)}

    sim = s.get("simulation", {})
    _check_keys(sim, DEFAULT_SETTINGS["simulation"], "synthetic.simulation")
    sim = {**DEFAULT_SETTINGS["simulation"], **sim}
    if not isinstance(sim["enabled"], bool):
        raise ShiftcurvError("synthetic.simulation.enabled: expected true or false")
    out["simulation"] = {
        "enabled": sim["enabled"],
        "walkers": _int(sim["walkers"], "synthetic.simulation.walkers", 10),
        "dt_factor": _num(sim["dt_factor"], "synthetic.simulation.dt_factor", positive=True),
        "max_steps": _int(sim["max_steps"], "synthetic.simulation.max_steps", 1),
        "burn_in": _num(sim["burn_in"], "synthetic.simulation.burn_in", positive=True),
        "sample": _num(sim["sample"], "synthetic.simulation.sample", positive=True),
        "snapshots": _int(sim["snapshots"], "synthetic.simulation.snapshots", 1),
        "bins": _int(sim["bins"], "synthetic.simulation.bins", 2),
        "max_temperatures": _int(sim["max_temperatures"],
                                 "synthetic.simulation.max_temperatures", 1),
        "seed": _int(sim["seed"], "synthetic.simulation.seed", 0),
    }
    if out["simulation"]["dt_factor"] >= 1:
        raise ShiftcurvError("synthetic.simulation.dt_factor: must be < 1 (dt·max U'' < 1)")
    for name in out["paper_sets"]:
        if name in out["basin_sets"]:
            raise ShiftcurvError(f"synthetic.basin_sets.{name}: clashes with a paper set name "
                                 "(rename it, or drop it from paper_sets)")
    return out


def basin_set_specs(resolved: dict) -> dict[str, dict]:
    """name -> full basin-set spec: the chosen paper tables, then the user's sets."""
    specs = {n: resolve_basin_set(PAPER_BASIN_SETS[n], n) for n in resolved["paper_sets"]}
    specs.update(resolved["basin_sets"])
    return specs


def set_names(settings: dict | None) -> list[str]:
    """Basin-set names in order, without checking every value (cheap: used at DAG parse)."""
    s = settings or {}
    paper = s.get("paper_sets", DEFAULT_SETTINGS["paper_sets"])
    user = s.get("basin_sets", DEFAULT_SETTINGS["basin_sets"]) or {}
    return list(dict.fromkeys([*paper, *user]))


def figure_names(settings: dict | None, outdir: str = "results/figures") -> list[str]:
    """The PNGs `shiftcurv synthetic` writes: one 4-panel figure per basin set, and the checks."""
    return ([f"{outdir}/synthetic_{name}.png" for name in set_names(settings)]
            + [f"{outdir}/synthetic_checks.png"])


def temperature_grid(resolved: dict) -> np.ndarray:
    t = resolved["temperatures"]
    if isinstance(t, list):
        return np.asarray(t, float)
    return np.geomspace(t["min"], t["max"], t["num"])


def theta_grid(resolved: dict) -> np.ndarray:
    th = resolved["theta"]
    return np.linspace(th["min"], th["max"], th["num"])


# --------------------------------------------------------------------------------------------
# Losses and noise
# --------------------------------------------------------------------------------------------

def mixture_loss(theta, minima, weights, sigmas, c: float, lscale: float, derivs: int = 0):
    """−lscale·log(Σ_k w_k N(θ; m_k, σ_k²) + c) and its first `derivs` θ-derivatives.

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

    kind: str = "constant"
    D0: float = 1.0
    alpha: float = 0.0
    fn: Callable | None = None
    dfn: Callable | None = None
    d2fn: Callable | None = None

    @classmethod
    def from_spec(cls, spec) -> Noise:
        if isinstance(spec, Noise):
            return spec
        if callable(spec):
            return cls(kind="function", fn=spec)
        spec = resolve_noise(spec, "noise")
        if spec["kind"] == "constant":
            return cls("constant", D0=spec["D"])
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
    """One synthetic problem: the mixture loss of the module docstring, the shift, the noise."""

    name: str
    minima: tuple
    weights: tuple
    sigmas: tuple
    c: float = 0.001
    stddev_shift: float = 0.1
    lscale: float = 1.0
    wscale: float = 0.0
    seed: int = 0
    shift: float | None = None
    noise: Noise = field(default_factory=Noise)
    description: str = ""

    @classmethod
    def from_spec(cls, name: str, spec: dict, noise=None) -> BasinSet:
        """From a config spec (the Appendix G keys); `noise` (a callable D(θ) or Noise)
        overrides the spec's noise."""
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
    """Test loss U_test(θ) = U_tr(θ + s) (with wscale = 0, as in every paper table)."""
    return bs.U_test(theta)


def basin_sets(resolved: dict) -> dict[str, BasinSet]:
    return {n: BasinSet.from_spec(n, spec) for n, spec in basin_set_specs(resolved).items()}


# --------------------------------------------------------------------------------------------
# Basins, the exact steady state (Eq. 5), and its integrals
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
    """Local minima of U_tr on the grid and the maxima between them.

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


def _trap_log_weights(theta: np.ndarray) -> np.ndarray:
    dx = np.diff(theta)
    w = np.zeros_like(theta)
    w[:-1] += dx / 2
    w[1:] += dx / 2
    return np.log(w)


def potential_on_grid(bs: BasinSet, theta: np.ndarray) -> np.ndarray:
    """F(θ) = ∫ U_tr'/D dθ on the grid (closed form where there is one, else cumulative
    Simpson), so that Eq. 5's effective potential is v(θ, T) = F(θ) + (T/2)·log D(θ)."""
    U, dU = bs.U_tr(theta, derivs=1)
    F = bs.noise.potential(U)
    if F is None:
        from scipy.integrate import cumulative_simpson

        D = bs.noise.D(theta, U)
        F = cumulative_simpson(dU / D, x=theta, initial=0.0)
    return F


def log_steady_state(bs: BasinSet, theta: np.ndarray, T) -> np.ndarray:
    """log ρ(θ) of Eq. 5 on the grid, normalised (trapezoid), for each T: shape (len(T), n).

    In 1-D, v(θ, T) = ∫ (U_tr'/D + (T/2)·D'/D) dθ = F(θ) + (T/2)·log D(θ), so
    ρ ∝ exp(−2v/T) = exp(−2F/T) / D. With constant D this is ρ ∝ exp(−2U_tr/(T·D)) (§3.1).
    Computed in log space: at small T, exp(−2U/T) underflows far from the deepest minimum.
    """
    T = np.atleast_1d(np.asarray(T, float))
    F = potential_on_grid(bs, theta)
    U = bs.U_tr(theta)
    logD = np.log(bs.noise.D(theta, U))
    if np.any(~np.isfinite(logD)):
        raise ShiftcurvError(f"basin set {bs.name}: noise D(θ) must be > 0 on the grid")
    lr = -2.0 * F[None, :] / T[:, None] - logD[None, :]
    lr -= logsumexp(lr + _trap_log_weights(theta)[None, :], axis=1, keepdims=True)
    return lr


def steady_state(bs: BasinSet, theta: np.ndarray, T) -> np.ndarray:
    """ρ(θ) of Eq. 5 on the grid, normalised; shape (len(T), n)."""
    return np.exp(log_steady_state(bs, theta, T))


def _segment_log_mass(theta, log_f, a: int, b: int) -> np.ndarray:
    """log ∫ exp(log_f) over theta[a..b] (trapezoid), for each row."""
    lw = _trap_log_weights(theta[a:b + 1])
    return logsumexp(log_f[..., a:b + 1] + lw, axis=-1)


def _log_mass_between(theta, log_f, lo: float, hi: float) -> np.ndarray:
    """log ∫_lo^hi exp(log_f) dθ for each row: trapezoid on the grid points inside, plus the two
    partial end segments (log_f interpolated linearly), so that the basins partition the mass
    exactly and a boundary between grid points converges as O(dx²)."""
    n = len(theta)
    i = int(np.searchsorted(theta, lo, side="left"))       # first grid point >= lo
    j = int(np.searchsorted(theta, hi, side="right")) - 1  # last grid point <= hi
    parts = []
    if i <= j:
        if j > i:
            parts.append(_segment_log_mass(theta, log_f, i, j))
        for edge, g, nb in ((lo, i, i - 1), (hi, j, j + 1)):   # nb: the point beyond the edge
            if 0 <= nb < n and edge != theta[g]:
                t = (edge - theta[g]) / (theta[nb] - theta[g])
                lf_e = (1 - t) * log_f[..., g] + t * log_f[..., nb]
                parts.append(np.log(abs(edge - theta[g]) / 2) + np.logaddexp(lf_e, log_f[..., g]))
    else:   # lo and hi inside one grid segment
        t0 = (lo - theta[j]) / (theta[i] - theta[j])
        t1 = (hi - theta[j]) / (theta[i] - theta[j])
        la = (1 - t0) * log_f[..., j] + t0 * log_f[..., i]
        lb = (1 - t1) * log_f[..., j] + t1 * log_f[..., i]
        parts.append(np.log((hi - lo) / 2) + np.logaddexp(la, lb))
    if not parts:
        return np.full(log_f.shape[:-1], -np.inf)
    return logsumexp(np.stack(parts), axis=0)


def basin_log_masses(theta, log_f, basins: Basins) -> np.ndarray:
    """log ∫_basin k exp(log_f) dθ: shape (rows, K)."""
    e = basins.theta_edges
    return np.stack([_log_mass_between(theta, log_f, e[k], e[k + 1]) for k in range(basins.K)],
                    axis=-1)


def basin_probabilities(theta, log_rho, basins: Basins) -> np.ndarray:
    """w_k(T) = ∫_basin k ρ dθ: shape (len(T), K); the basins partition the grid."""
    return np.exp(basin_log_masses(theta, log_rho, basins))


def expected_loss(theta, rho, U) -> np.ndarray:
    """E_ρ[U] = ∫ ρ·U dθ (trapezoid) for each row of rho."""
    return np.trapezoid(rho * U[None, :], theta, axis=-1)


# --------------------------------------------------------------------------------------------
# The Gaussian-mixture (Laplace) approximation: Eq. 6, Eq. 4, Eq. 8
# --------------------------------------------------------------------------------------------

def local_minima(bs: BasinSet, theta, basins: Basins) -> dict:
    """Train and test local minima per basin: θ_k^tr, U_k^tr, C_k^tr, θ_k^test, U_k^test,
    C_k^test, and the shift s_k = θ_k^test − θ_k^tr (= −s when wscale = 0)."""
    t_tr = basins.theta_tr
    U_k, _, C_k = bs.U_tr(t_tr, derivs=2)
    lo, hi = basins.boundaries(theta)[:-1], basins.boundaries(theta)[1:]

    def f2(x):
        _, g, h = bs.U_test(x, derivs=2)
        return g, h

    t_te = _newton_min(f2, t_tr - bs.s, lo - bs.s, hi - bs.s)
    Ut_k, _, Ct_k = bs.U_test(t_te, derivs=2)
    return {"theta_tr": t_tr, "U_tr": U_k, "C_tr": C_k, "theta_test": t_te, "U_test": Ut_k,
            "C_test": Ct_k, "s": t_te - t_tr}


def laplace(bs: BasinSet, theta, basins: Basins, T, minima: dict | None = None) -> dict:
    """Eq. 6 and Appendix B.2 for each T (rows) and basin k (columns).

    μ_k: the minimum of the effective potential v(θ, T) in basin k (U_tr' + (T/2)·D' = 0 near
    θ_k^tr); v''(μ_k) = (U_tr'' + (T/2)·D'')/D at μ_k; basin log-mass
    log ∫ e^{−2v/T} ≈ −2v(μ_k)/T + ½·log(πT / v''(μ_k)); weights w_k (Eq. 6) = softmax of that;
    covariance Σ_k = T/(2 v''(μ_k)) (Eq. 25); bias b_k = θ_k^tr − μ_k.
    """
    T = np.atleast_1d(np.asarray(T, float))[:, None]
    mins = local_minima(bs, theta, basins) if minima is None else minima
    bnd = basins.boundaries(theta)
    lo = np.broadcast_to(bnd[:-1], (T.shape[0], basins.K))
    hi = np.broadcast_to(bnd[1:], (T.shape[0], basins.K))
    nz = bs.noise

    def derivs(x):
        U, dU, d2U = bs.U_tr(x, derivs=2)
        return U, dU, d2U, nz.D(x, U), nz.dD(x, U, dU), nz.d2D(x, U, dU, d2U)

    def f2(x):
        _, dU, d2U, _, dD, d2D = derivs(x)
        return dU + 0.5 * T * dD, d2U + 0.5 * T * d2D

    x0 = np.broadcast_to(mins["theta_tr"], lo.shape)
    mu = _newton_min(f2, x0, lo, hi)
    U, dU, d2U, D, dD, d2D = derivs(mu)
    v2 = (d2U + 0.5 * T * d2D) / D
    F = nz.potential(U)
    if F is None:   # the grid integral, continued to μ by a cubic spline of it
        from scipy.interpolate import CubicSpline

        F = CubicSpline(theta, potential_on_grid(bs, theta))(mu)
    v = F + 0.5 * T * np.log(D)
    ok = (v2 > 0) & (mu > lo) & (mu < hi)
    log_mass = np.where(ok, -2.0 * v / T + 0.5 * np.log(np.pi * T / np.where(ok, v2, 1.0)),
                        np.nan)
    w = np.exp(log_mass - logsumexp(log_mass, axis=1, keepdims=True))
    return {"mu": mu, "v": v, "v2": np.where(ok, v2, np.nan), "log_mass": log_mass, "w": w,
            "Sigma": np.where(ok, 0.5 * T / np.where(ok, v2, 1.0), np.nan),
            "b": mins["theta_tr"] - mu, "minima": mins}


def exact_log_masses(bs: BasinSet, theta, basins: Basins, T) -> np.ndarray:
    """log ∫_basin e^{−2v(θ,T)/T} dθ on the grid, with the same constant as `laplace`."""
    T = np.atleast_1d(np.asarray(T, float))
    F = potential_on_grid(bs, theta)
    logD = np.log(bs.noise.D(theta, bs.U_tr(theta)))
    lf = -2.0 * F[None, :] / T[:, None] - logD[None, :]
    return basin_log_masses(theta, lf, basins)


def expected_losses_approx(lap: dict) -> dict:
    """Gaussian-mixture expected losses.

    eq8:  E[U_test] ≈ Σ_k w_k (U_k^test + ½ C_k^test s_k²)   (Eq. 8; Eq. 7 without O(T))
          E[U_tr]   ≈ Σ_k w_k U_k^tr
    eq4:  E[U_test] ≈ Σ_k w_k (U_k^test + ½ Σ_k C_k^test + ½ C_k^test (s_k + b_k)²)   (Eq. 4)
          E[U_tr]   ≈ Σ_k w_k (U_k^tr + ½ Σ_k C_k^tr + ½ C_k^tr b_k²)
    with w_k from Eq. 6, Σ_k and b_k from Appendix B.2.
    """
    m, w, S, b = lap["minima"], lap["w"], lap["Sigma"], lap["b"]
    return {
        "test_eq8": np.sum(w * (m["U_test"] + 0.5 * m["C_test"] * m["s"] ** 2), axis=1),
        "train_eq8": np.sum(w * m["U_tr"], axis=1),
        "test_eq4": np.sum(w * (m["U_test"] + 0.5 * S * m["C_test"]
                                + 0.5 * m["C_test"] * (m["s"] + b) ** 2), axis=1),
        "train_eq4": np.sum(w * (m["U_tr"] + 0.5 * S * m["C_tr"] + 0.5 * m["C_tr"] * b**2),
                            axis=1),
    }


# --------------------------------------------------------------------------------------------
# Relaxation time and the SGD diffusion (Eq. 11)
# --------------------------------------------------------------------------------------------

def _log_cumtrap(theta, lf):
    """log of the cumulative trapezoid integral of exp(lf) from theta[0] (−inf at theta[0])."""
    seg = np.log(np.diff(theta) / 2) + np.logaddexp(lf[:-1], lf[1:])
    out = np.empty_like(lf)
    out[0] = -np.inf
    out[1:] = np.logaddexp.accumulate(seg)
    return out


def log_mean_first_passage(theta, log_rho, D, T: float, i0: int, i1: int) -> float:
    """log of the mean first-passage time of Eq. 11 from theta[i0] to theta[i1].

    1-D formula for dθ = a dt + sqrt(T·D) dW with steady state ρ, reflecting at the grid end
    behind the start: τ = ∫_{θ0}^{θ1} 2·P(y) / (T·D(y)·ρ(y)) dy, P(y) = ρ's mass behind y.
    In log space: across a barrier τ ~ exp(2ΔU/T) overflows long before it matters.
    """
    if i0 > i1:   # mirror
        return log_mean_first_passage(-theta[::-1], log_rho[::-1], D[::-1], T,
                                      len(theta) - 1 - i0, len(theta) - 1 - i1)
    if i0 == i1:
        return -np.inf
    lP = _log_cumtrap(theta, log_rho)
    lf = math.log(2.0) + lP - np.log(T * D) - log_rho
    return float(_segment_log_mass(theta, lf, i0, i1))


def relaxation_time(bs: BasinSet, theta, log_rho, basins: Basins, T,
                    end_mass_tol: float = 1e-3) -> np.ndarray:
    """An estimate of how long Eq. 11 takes, from walkers at the basin minima, to reach the
    steady state, per T.

    For each pair of neighbouring basins a, b the two-state relaxation time
    1/(1/τ_{a→b} + 1/τ_{b→a}) from the mean first-passage times between their minima; for each
    grid end whose outer region (U_tr above halfway from the nearest minimum to the end value)
    holds more than `end_mass_tol` of ρ, the first-passage time from the end to that minimum
    (the plateau filling by diffusion); and at least 1/min_k(C_k·D) (relaxation inside a basin).
    The largest of these; +inf where it overflows (e^{2ΔU/T} at small T: there SGD never mixes
    between basins within any practical time).
    """
    T = np.atleast_1d(np.asarray(T, float))
    U_k, _, C = bs.U_tr(basins.theta_tr, derivs=2)
    inner = float(np.max(1.0 / np.maximum(C * bs.noise.D(basins.theta_tr, U_k), 1e-300)))
    idx = np.clip(np.searchsorted(theta, basins.theta_tr), 0, len(theta) - 1)
    U = bs.U_tr(theta)
    D = bs.noise.D(theta, U)
    n = len(theta)
    ends = []
    for end, k in ((0, 0), (n - 1, basins.K - 1)):
        sl = slice(0, idx[k] + 1) if end == 0 else slice(idx[k], n)
        half = U_k[k] + 0.5 * (U[end] - U_k[k])
        region = np.zeros(n, bool)
        region[sl] = U[sl] > half
        if U[end] > U_k[k] and region.any():
            ends.append((end, idx[k], region))
    out = np.full(T.shape, inner)
    for j, t in enumerate(T):
        worst = math.log(inner)
        for a, b in zip(idx[:-1], idx[1:], strict=True):
            lab = log_mean_first_passage(theta, log_rho[j], D, t, a, b)
            lba = log_mean_first_passage(theta, log_rho[j], D, t, b, a)
            worst = max(worst, -float(np.logaddexp(-lab, -lba)))
        for end, i_min, region in ends:
            p_end = np.trapezoid(np.exp(log_rho[j]) * region, theta)
            if p_end > end_mass_tol:
                worst = max(worst, log_mean_first_passage(theta, log_rho[j], D, t, end, i_min))
        out[j] = math.exp(worst) if worst < 700 else math.inf
    return out


def _U_dU_fast(bs: BasinSet, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """U_tr and U_tr' for the simulation's inner loop: direct sums, ~20x faster than the
    log-space `mixture_loss` (safe when c > 0: the denominator never underflows)."""
    if bs.c <= 0:
        return bs.U_tr(x, derivs=1)
    num = 0.0
    den = bs.c
    for m, w, sg in zip(bs.minima, bs.weights, bs.sigmas, strict=True):
        z = (x - m) * (1.0 / sg)
        p = (w / (sg * math.sqrt(2 * math.pi))) * np.exp(-0.5 * z * z)
        den = den + p
        num = num + p * (z / sg)
    return -bs.lscale * np.log(den), bs.lscale * num / den


def max_curvature(bs: BasinSet, theta) -> float:
    """max_θ U_tr''(θ): the stiffest drift rate, which bounds the Euler–Maruyama step."""
    _, _, C = bs.U_tr(theta, derivs=2)
    return float(np.max(np.maximum(C, 0.0)))


def simulate_sgd_diffusion(bs: BasinSet, T, theta, basins: Basins, *, walkers: int, dt: float,
                           n_steps: int, n_burn: int, snapshots: int, bins: int,
                           rng: np.random.Generator, start: str | int = "minima") -> dict:
    """Euler–Maruyama for Eq. 11, dθ = −U_tr'(θ) dt + sqrt(T·D(θ)) dW, all T at once.

    `walkers` independent walkers per T (vectorised: state shape (len(T), walkers)), reflected at
    the grid ends (where ρ of Eq. 5 is defined: zero flux there). They start far from the steady
    state on purpose: `start="minima"` puts equal numbers at each basin minimum (occupation 1/K
    each), an integer k puts them all at basin k's minimum, `"uniform"` spreads them over the
    grid. After `n_burn` steps, `snapshots` snapshots are
    taken evenly over the remaining steps and averaged: basin occupations, a density histogram on
    `bins` bins, and the mean train/test loss.
    """
    T = np.atleast_1d(np.asarray(T, float))
    lo, hi = float(theta[0]), float(theta[-1])
    K = basins.K
    if isinstance(start, (int, np.integer)):
        x = np.full((len(T), walkers), basins.theta_tr[start])
    elif start == "minima":
        x = np.tile(np.resize(basins.theta_tr, walkers), (len(T), 1))
    elif start == "uniform":
        x = rng.uniform(lo, hi, size=(len(T), walkers))
    else:
        raise ValueError(f"start must be 'minima', 'uniform' or a basin index, got {start!r}")
    amp = np.sqrt(T * dt)[:, None]
    variable = not bs.noise.is_constant
    sqD = math.sqrt(bs.noise.D0) if not variable else None
    inner = basins.boundaries(theta)[1:-1]
    edges = np.linspace(lo, hi, bins + 1)
    occ = np.zeros((len(T), K))
    hist = np.zeros((len(T), bins))
    Utr = np.zeros(len(T))
    Ute = np.zeros(len(T))
    n_sample = max(n_steps - n_burn, 1)
    take = set(n_burn + np.round(np.linspace(n_sample / snapshots, n_sample,
                                             snapshots)).astype(int) - 1)
    rows = np.arange(len(T))[:, None]
    for step in range(n_steps):
        U, dU = _U_dU_fast(bs, x)
        noise_amp = amp * np.sqrt(bs.noise.D(x, U)) if variable else amp * sqD
        x = x - dU * dt + noise_amp * rng.standard_normal(x.shape)
        # reflect at the ends (a step never crosses the range twice: dt is small)
        x = np.where(x < lo, 2 * lo - x, x)
        x = np.where(x > hi, 2 * hi - x, x)
        np.clip(x, lo, hi, out=x)
        if step in take:
            k = np.searchsorted(inner, x)
            occ += np.bincount((rows * K + k).ravel(), minlength=len(T) * K).reshape(len(T), K)
            j = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
            hist += np.bincount((rows * bins + j).ravel(),
                                minlength=len(T) * bins).reshape(len(T), bins)
            Utr += bs.U_tr(x).mean(axis=1)
            Ute += bs.U_test(x).mean(axis=1)
    n_snap = len(take)
    occ /= n_snap * walkers
    return {"occupation": occ,
            # conservative: the binomial error of one snapshot (averaging snapshots only helps)
            "occupation_se": np.sqrt(occ * (1 - occ) / walkers),
            "density": hist / (n_snap * walkers * np.diff(edges)),
            "bin_edges": edges, "train_loss": Utr / n_snap, "test_loss": Ute / n_snap,
            "dt": dt, "n_steps": n_steps, "n_burn": n_burn}


def simulation_plan(tau: np.ndarray, c_max: float, sim: dict) -> tuple[np.ndarray, float, int,
                                                                        int]:
    """Which temperatures the simulation can equilibrate within `max_steps`, and the run length.

    dt = dt_factor / max U_tr''. Euler–Maruyama's stationary variance in a basin of curvature C
    is too large by 1/(1 − C·dt/2), so a basin's weight (∝ its standard deviation) is too large
    by at most dt_factor/4 relative (1.25 % at the default 0.05). A temperature can be simulated
    when (burn_in + sample) relaxation times fit in max_steps; at most max_temperatures of those
    are, spread over the feasible range.
    """
    dt = sim["dt_factor"] / max(c_max, 1e-12)
    need = (sim["burn_in"] + sim["sample"]) * tau / dt
    chosen = np.isfinite(need) & (need <= sim["max_steps"])
    idx = np.flatnonzero(chosen)
    if idx.size > sim["max_temperatures"]:   # spread the simulated ones over the feasible range
        keep = idx[np.unique(np.round(np.linspace(0, idx.size - 1, sim["max_temperatures"]))
                             .astype(int))]
        chosen = np.zeros_like(chosen)
        chosen[keep] = True
    if not chosen.any():
        return chosen, dt, 0, 0
    tmax = float(np.max(tau[chosen]))
    n_steps = int(math.ceil((sim["burn_in"] + sim["sample"]) * tmax / dt))
    n_burn = int(math.ceil(sim["burn_in"] * tmax / dt))
    return chosen, dt, max(n_steps, n_burn + 1), n_burn


# --------------------------------------------------------------------------------------------
# One basin set, and the sweep over all of them
# --------------------------------------------------------------------------------------------

def analyse(bs: BasinSet, theta, T, sim: dict | None = None, rng=None) -> dict:
    """Everything about one basin set over the temperatures T (exact, approximate, simulated)."""
    T = np.atleast_1d(np.asarray(T, float))
    basins = find_basins(bs, theta)
    U = bs.U_tr(theta)
    Ut = bs.U_test(theta)
    lr = log_steady_state(bs, theta, T)
    rho = np.exp(lr)
    w = basin_probabilities(theta, lr, basins)
    train = expected_loss(theta, rho, U)
    test = expected_loss(theta, rho, Ut)
    mins = local_minima(bs, theta, basins)
    lap = laplace(bs, theta, basins, T, mins)
    approx = expected_losses_approx(lap)
    exact_lm = exact_log_masses(bs, theta, basins, T)
    out = {"basins": basins, "U_tr": U, "U_test": Ut, "D": bs.noise.D(theta, U),
           "rho": rho, "log_rho": lr, "w": w, "train_loss": train, "test_loss": test,
           "minima": mins, "laplace": lap, "approx": approx,
           "log_mass_error": np.nanmax(np.abs(lap["log_mass"] - exact_lm), axis=1),
           "w_error": np.nanmax(np.abs(lap["w"] - w), axis=1)}
    K = basins.K
    nT = len(T)
    out["sim"] = None
    if sim is not None and sim.get("enabled", True):
        tau = relaxation_time(bs, theta, lr, basins, T)
        chosen, dt, n_steps, n_burn = simulation_plan(tau, max_curvature(bs, theta), sim)
        res = {"tau": tau, "chosen": chosen, "dt": dt, "n_steps": n_steps,
               "occupation": np.full((nT, K), np.nan), "occupation_se": np.full((nT, K), np.nan),
               "density": np.full((nT, sim["bins"]), np.nan),
               "train_loss": np.full(nT, np.nan), "test_loss": np.full(nT, np.nan),
               "bin_edges": np.linspace(theta[0], theta[-1], sim["bins"] + 1)}
        if chosen.any():
            r = simulate_sgd_diffusion(bs, T[chosen], theta, basins, walkers=sim["walkers"],
                                       dt=dt, n_steps=n_steps, n_burn=n_burn,
                                       snapshots=sim["snapshots"], bins=sim["bins"],
                                       rng=rng if rng is not None
                                       else np.random.default_rng(sim["seed"]))
            for k in ("occupation", "occupation_se", "density", "train_loss", "test_loss"):
                res[k][chosen] = r[k]
        out["sim"] = res
    return out


def sweep(settings: dict | None = None, progress: Callable[[str], None] | None = None):
    """The whole synthetic study as one xarray.Dataset (dims basin_set, temperature, theta,
    basin, theta_bin); see docs/synthetic.md for every variable."""
    import xarray as xr

    from shiftcurv import __version__

    resolved = resolve_settings(settings)
    sets = basin_sets(resolved)
    T = temperature_grid(resolved)
    theta = theta_grid(resolved)
    sim = resolved["simulation"]
    names = list(sets)
    results = {}
    for name, bs in sets.items():
        if progress:
            progress(f"basin set {name}: {len(bs.minima)} components, s = {bs.s:g}")
        # one stream per set, so adding a set does not change the others' walkers
        rng = np.random.default_rng([sim["seed"], zlib.crc32(name.encode())])
        results[name] = analyse(bs, theta, T, sim, rng)
    K = max(r["basins"].K for r in results.values())
    nS, nT, n, nb = len(names), len(T), len(theta), sim["bins"]

    def full(*shape, dtype=float):
        return np.full(shape, np.nan if dtype is float else 0, dtype=dtype)

    v = {k: full(nS, n) for k in ("U_tr", "U_test", "D")}
    v["rho"] = full(nS, nT, n)
    for k in ("basin_prob", "basin_prob_eq6", "sim_basin_prob", "sim_basin_prob_se",
              "Sigma", "bias", "mu"):
        v[k] = full(nS, nT, K)
    for k in ("train_loss", "test_loss", "train_loss_eq8", "test_loss_eq8", "train_loss_eq4",
              "test_loss_eq4", "basin_prob_eq6_error", "log_mass_eq6_error",
              "relaxation_time", "sim_train_loss", "sim_test_loss"):
        v[k] = full(nS, nT)
    v["simulated"] = full(nS, nT, dtype=np.int8)
    for k in ("basin_theta_tr", "basin_U_tr", "basin_C_tr", "basin_theta_test", "basin_U_test",
              "basin_C_test", "basin_lo", "basin_hi"):
        v[k] = full(nS, K)
    v["sim_density"] = full(nS, nT, nb)
    for k in ("shift", "optimal_temperature", "sim_dt", "sim_steps", "n_basins"):
        v[k] = full(nS)
    for i, name in enumerate(names):
        r = results[name]
        b = r["basins"]
        k = b.K
        v["U_tr"][i], v["U_test"][i], v["D"][i] = r["U_tr"], r["U_test"], r["D"]
        v["rho"][i] = r["rho"]
        v["basin_prob"][i, :, :k] = r["w"]
        v["basin_prob_eq6"][i, :, :k] = r["laplace"]["w"]
        v["Sigma"][i, :, :k] = r["laplace"]["Sigma"]
        v["bias"][i, :, :k] = r["laplace"]["b"]
        v["mu"][i, :, :k] = r["laplace"]["mu"]
        v["train_loss"][i], v["test_loss"][i] = r["train_loss"], r["test_loss"]
        for a in ("train", "test"):
            for e in ("eq8", "eq4"):
                v[f"{a}_loss_{e}"][i] = r["approx"][f"{a}_{e}"]
        v["basin_prob_eq6_error"][i] = r["w_error"]
        v["log_mass_eq6_error"][i] = r["log_mass_error"]
        m = r["minima"]
        v["basin_theta_tr"][i, :k], v["basin_U_tr"][i, :k] = m["theta_tr"], m["U_tr"]
        v["basin_C_tr"][i, :k], v["basin_theta_test"][i, :k] = m["C_tr"], m["theta_test"]
        v["basin_U_test"][i, :k], v["basin_C_test"][i, :k] = m["U_test"], m["C_test"]
        bnd = b.boundaries(theta)
        v["basin_lo"][i, :k], v["basin_hi"][i, :k] = bnd[:-1], bnd[1:]
        v["shift"][i] = sets[name].s
        v["n_basins"][i] = k
        v["optimal_temperature"][i] = T[int(np.argmin(r["test_loss"]))]
        s = r["sim"]
        if s is not None:
            v["relaxation_time"][i] = s["tau"]
            v["simulated"][i] = s["chosen"].astype(np.int8)
            v["sim_basin_prob"][i, :, :k] = s["occupation"]
            v["sim_basin_prob_se"][i, :, :k] = s["occupation_se"]
            v["sim_density"][i] = s["density"]
            v["sim_train_loss"][i], v["sim_test_loss"][i] = s["train_loss"], s["test_loss"]
            v["sim_dt"][i], v["sim_steps"][i] = s["dt"], s["n_steps"]

    dims3, dimsk = ("basin_set", "temperature", "theta"), ("basin_set", "temperature", "basin")
    dimst, dimsb = ("basin_set", "temperature"), ("basin_set", "basin")
    meta = {
        "U_tr": (("basin_set", "theta"), "1", "train loss U_tr(theta)"),
        "U_test": (("basin_set", "theta"), "1", "test loss U_test(theta) = U_tr(theta + s)"),
        "D": (("basin_set", "theta"), "1", "SGD noise D(theta)"),
        "rho": (dims3, "1/theta", "steady-state density rho(theta) of Eq. 5 (exact, grid)"),
        "basin_prob": (dimsk, "1", "basin probability w_k(T): integral of rho over basin k"),
        "basin_prob_eq6": (dimsk, "1", "basin probability, Laplace approximation (Eq. 6)"),
        "sim_basin_prob": (dimsk, "1", "basin occupation of the Eq. 11 simulation"),
        "sim_basin_prob_se": (dimsk, "1", "binomial standard error of sim_basin_prob "
                                          "(one snapshot of all walkers; conservative)"),
        "Sigma": (dimsk, "theta^2", "Gaussian-mixture variance Sigma_k = T/(2 v''(mu_k))"),
        "bias": (dimsk, "theta", "Gaussian-mixture bias b_k = theta_k^tr - mu_k"),
        "mu": (dimsk, "theta", "minimum mu_k of the effective potential v(theta, T)"),
        "train_loss": (dimst, "1", "expected train loss E_rho[U_tr] (exact, grid)"),
        "test_loss": (dimst, "1", "expected test loss E_rho[U_test] (exact, grid)"),
        "train_loss_eq8": (dimst, "1", "sum_k w_k U_k^tr (leading order, Eq. 6 weights)"),
        "test_loss_eq8": (dimst, "1", "sum_k w_k (U_k^test + s_k C_k^test s_k / 2) (Eq. 8)"),
        "train_loss_eq4": (dimst, "1", "Gaussian-mixture train loss with Sigma_k, b_k (Eq. 4 "
                                       "with s = 0)"),
        "test_loss_eq4": (dimst, "1", "Gaussian-mixture test loss with Sigma_k, b_k (Eq. 4)"),
        "basin_prob_eq6_error": (dimst, "1", "max_k |basin_prob_eq6 - basin_prob|"),
        "log_mass_eq6_error": (dimst, "1", "max_k |log basin mass, Laplace - exact| (O(T))"),
        "relaxation_time": (dimst, "time", "estimated time for Eq. 11 to equilibrate the basin "
                                           "occupations (mean first-passage times)"),
        "simulated": (dimst, "1", "1 where the Eq. 11 simulation ran (relaxation fits in "
                                  "max_steps), else 0"),
        "sim_train_loss": (dimst, "1", "mean train loss over the simulated walkers"),
        "sim_test_loss": (dimst, "1", "mean test loss over the simulated walkers"),
        "sim_density": (("basin_set", "temperature", "theta_bin"), "1/theta",
                        "histogram density of the simulated walkers"),
        "basin_theta_tr": (dimsb, "theta", "train local minimum theta_k^tr"),
        "basin_U_tr": (dimsb, "1", "U_k^tr = U_tr(theta_k^tr)"),
        "basin_C_tr": (dimsb, "1/theta^2", "C_k^tr = U_tr''(theta_k^tr)"),
        "basin_theta_test": (dimsb, "theta", "test local minimum theta_k^test"),
        "basin_U_test": (dimsb, "1", "U_k^test = U_test(theta_k^test)"),
        "basin_C_test": (dimsb, "1/theta^2", "C_k^test = U_test''(theta_k^test)"),
        "basin_lo": (dimsb, "theta", "left boundary of basin k (a maximum of U_tr or the "
                                     "grid end)"),
        "basin_hi": (dimsb, "theta", "right boundary of basin k"),
        "shift": (("basin_set",), "theta", "train/test shift s: U_test(theta) = U_tr(theta+s)"),
        "n_basins": (("basin_set",), "1", "number of basins of U_tr on the grid"),
        "optimal_temperature": (("basin_set",), "1", "temperature of the grid with the lowest "
                                                     "expected test loss"),
        "sim_dt": (("basin_set",), "time", "Euler-Maruyama time step"),
        "sim_steps": (("basin_set",), "1", "Euler-Maruyama steps (0: nothing simulated)"),
    }
    data_vars = {k: (d, v[k], {"units": u, "long_name": ln}) for k, (d, u, ln) in meta.items()}
    edges = np.linspace(theta[0], theta[-1], sim["bins"] + 1)
    specs = basin_set_specs(resolved)
    coords = {
        "basin_set": ("basin_set", names, {"long_name": "basin set (Appendix G table or "
                                                        "user's)", "units": "1"}),
        "temperature": ("temperature", T, {"units": "1", "long_name": "SGD temperature T = "
                                                                      "lr / batch size"}),
        "theta": ("theta", theta, {"units": "theta", "long_name": "parameter theta"}),
        "basin": ("basin", np.arange(K), {"units": "1", "long_name": "basin index, left to "
                                                                     "right"}),
        "theta_bin": ("theta_bin", 0.5 * (edges[1:] + edges[:-1]),
                      {"units": "theta", "long_name": "centre of a simulation histogram bin"}),
        "description": ("basin_set", [sets[nm].description for nm in names],
                        {"units": "1", "long_name": "what the basin set illustrates"}),
        "spec": ("basin_set", [json.dumps(specs[nm], sort_keys=True) for nm in names],
                 {"units": "1", "long_name": "the basin set's parameters (JSON)"}),
    }
    attrs = {"title": "shiftcurv synthetic basins (paper Fig. 4 and Fig. 6)",
             "settings": json.dumps(resolved, sort_keys=True),
             "shiftcurv_version": __version__,
             "reading": "U_tr = -lscale*log(sum_k w_k N(theta; m_k, sigma_k^2) + c), w "
                        "unnormalised; U_test(theta) = U_tr(theta + s), s = stddev_shift",
             "reference": "Bradley, Gomez-Uribe, Vuyyuru: Shift-curvature, SGD, and "
                          "generalization (Sec. 3.1, Appendix G.2)"}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def write_netcdf(ds, path) -> None:
    """netCDF4 with zlib, written atomically."""
    from shiftcurv.io import atomic_path

    encoding = {k: {"zlib": True, "complevel": 4} for k, var in ds.data_vars.items()
                if var.dtype.kind in "fi"}
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
