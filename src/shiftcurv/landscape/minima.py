"""Finding θ_tr and θ_test from the SGD solution (paper Section 3, Appendix G).

The minimum is defined as the endpoint of gradient flow dθ/dτ = −∇U_α(θ) from the SGD solution,
run to flow time τ_max or until ‖∇U_α‖ ≤ gtol. The valleys are so flat that "the" minimum is not
well defined otherwise (L-BFGS endpoints from one start land far apart at equally small ‖g‖);
the flow endpoint is, and it is what the paper's protocol computes: small-step descent at
lr 1e-4 for many epochs is gradient flow to τ = lr × steps.

Two methods, same flow:
- `paper_descent`: the paper's protocol — minibatch GD, no shuffle, no drop-last, fixed lr;
  τ advances by lr per step. Faithful and slow: the reference.
- `gradient_flow` (default): the same flow integrated fast — full-batch Heun steps (order=2: the
  average of the gradients at both ends of a GD step; order=1 is explicit Euler = GD) with steps
  that grow with flow time: h = min(safety/λ_max, ε·max(τ, 1/λ_max)). A direction of
  curvature λ moves only while τ ≲ few/λ, so steps proportional to τ resolve every direction with
  the same relative accuracy (Euler: about ε/10 of each direction's displacement; Heun: O(ε²)
  on smooth problems; benchmarks/bench_minima.py at ε = 0.15, τ = 1 measures 0.003 % (train)
  and 1.5 % (test) of ‖s‖, the latter 0.76 % at ε = 0.05),
  and the number of steps grows only like log(τ_max·λ_max)/ε plus the time spent at the
  stability limit h ≤ safety/λ_max (λ_max by Lanczos on Hessian-vector products,
  re-estimated every `refresh_every` steps). A sufficient-decrease test guards every step
  against the step actually taken: with d = g (Euler) or ½(g + g_pred) (Heun), U_α must drop by
  ½·h·(g·d) (and g·d > 0), i.e. the curvature along d is below (g·d)/(h‖d‖²); if not, the step
  is retried at h/2, with λ_max re-estimated on the first rejection of a streak. On a quadratic
  this passes every Heun step inside the stability region (hλ < 2). No error estimate from
  gradient differences is used: ReLU networks have kinks where the gradient jumps and the flow
  can slide along one, which makes such estimates collapse the step to zero.

Kinks (measured on configs/tiny.yaml trained 4000 epochs, T = 1e-3, B = 32, seed 0: by
τ ≈ 0.56 the train flow reaches a crease where 20 (sample, unit) ReLU pre-activations sit within
1e-11 of zero, and slides along it). The guard used to demand a drop of ½·h·‖g‖², the Euler
step's prediction, not Heun's. Across the crease the gradient points back (g·g_pred ≈ −0.08‖g‖²
at every h from 1e-8 to 1e-2, against λ_max = 1.5 and curvature 0.016 along g: a jump, not
curvature), so Heun's step descends at only (g·d)/‖g‖² = 0.46 (measured drop 0.456·h‖g‖²) and
failed the ½ at every step size; only steps short of the crease (h ≈ 1e-9) passed. The flow
crept at τ = 0.558 for the whole 20,000-step cap (80,049 gradients, 41,652 HVPs, 84 s,
"max_steps"). Testing the drop against g·d (½·0.46 = 0.23 needed, 0.456 measured) lets Heun's
averaged step slide along the crease like the paper's GD: τ = 5 in 22 steps, 45 gradients,
4 HVPs, 0.03 s, endpoint 2.1e-3 from `paper_descent` at lr 1e-4 (11 % of the 0.018 the train
flow moves; 0.11 % of ‖s‖ = 1.86). An Euler/GD fallback was not chosen: the Euler step across
this crease *raises* U_α (by 0.07 to 0.08·h‖g‖² for every h from 1e-7 to 1e-2), so no decrease
test accepts it (GD at lr 1e-4 goes on only because it never tests; order=1 flows end "stalled"
there, τ = 0.59 after 23 steps, 59 gradients). Along a crease Heun is first order: endpoint
error 11, 3.6, 1.4, 0.4 % of the distance moved at step_ratio 0.15, 0.05, 0.015, 0.005. Smooth
flows are unchanged (benchmarks/bench_minima.py gives the same steps and endpoints as before).

A flow that truly cannot advance (a kink at a minimum its one-sided gradient does not see, a
value inconsistent with its gradient) ends "stalled" as soon as `stall_attempts` (30)
attempts in a row have not advanced τ by one nominal step min(safety/λ_max, ε·max(τ, τ_0)):
≤ 2·30 gradients and one Lanczos per rejection streak spent finding out. Healthy flows never
come near it: a streak of k rejections costs 2k + 1 attempts per nominal step (k ≤ 14 passes).
L-BFGS is deliberately not offered as a default: it leaves the flow path.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from shiftcurv.landscape.eigen import lanczos
from shiftcurv.landscape.objective import Objective


@dataclass
class FlowResult:
    theta: torch.Tensor
    method: str
    tau: float  # flow time reached
    steps: int
    grad_evals: float  # in full-data gradient equivalents
    hvp_evals: int
    grad_norm: float  # ‖∇U_α‖ at the endpoint
    value: float  # U_α at the endpoint
    stop_reason: str  # "tau", "gtol", "max_steps", "diverged", "stalled"
    seconds: float
    history: dict = field(default_factory=lambda: {"tau": [], "value": [], "grad_norm": []})
    rejected: int = 0  # trial steps rejected by the Armijo guard

    def record(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "theta"}


def _log(history: dict, tau: float, value: float, gnorm: float) -> None:
    history["tau"].append(tau)
    history["value"].append(value)
    history["grad_norm"].append(gnorm)


def _stop_reason(value: float, gnorm: float, gtol: float, tau: float,
                 tau_max: float | None) -> str | None:
    """Why a descent should stop here (checked in this order), or None to go on."""
    if not (math.isfinite(value) and math.isfinite(gnorm)):
        return "diverged"
    if gnorm <= gtol:
        return "gtol"
    if tau_max is not None and tau >= tau_max * (1 - 1e-12):
        return "tau"
    return None


def top_curvature(objective: Objective, theta: torch.Tensor, v0: torch.Tensor | None = None,
                  iters: int = 30, rtol: float = 1e-2) -> tuple[float, torch.Tensor, int]:
    """λ_max of ∇²U_α(θ) by Lanczos (warm-started from v0), to relative accuracy ~rtol: the step
    limit needs it only roughly, and Lanczos gets there in a handful of HVPs where power
    iteration needs tens. Returns (λ_max, its Ritz vector, HVPs used)."""
    r = lanczos(lambda v: objective.hvp(theta, v.to(theta.dtype)), theta.numel(), k=1,
                which="LA", tol=rtol, max_iter=iters, v0=v0, device=theta.device,
                basis_dtype=theta.dtype, return_vectors=True)
    return abs(float(r.eigenvalues[0])), r.eigenvectors[:, 0].to(theta.dtype), int(r.n_matvec)


def gradient_flow(objective: Objective, theta0: torch.Tensor, *, tau_max: float = 10.0,
                  gtol: float = 0.0, max_steps: int = 100_000, step_ratio: float = 0.15,
                  safety: float = 1.0, refresh_every: int = 25, order: int = 2,
                  stall_attempts: int = 30, progress=None) -> FlowResult:
    """Integrate dθ/dτ = −∇U_α(θ) from θ0 to τ_max (or ‖∇U_α‖ ≤ gtol, or max_steps).
    order=1: explicit Euler (one gradient per step); order=2: Heun (two per step).

    A step d = g (Euler) or ½(g + g_pred) (Heun) over dt is accepted if U_α drops by at least
    ½·dt·(g·d), half its first-order prediction along the step actually taken. Ends "stalled" when
    `stall_attempts` attempts in a row have not advanced τ by one nominal step (see module
    docstring: a kink can make every trial fail; this bounds the work spent finding out)."""
    t0 = time.perf_counter()
    progress = progress or (lambda msg, force=False: None)
    theta = theta0.detach().clone()
    value, g = objective.value_and_grad(theta)
    gnorm = float(g.norm())
    grad_evals, hvps = 1, 0
    history: dict = {"tau": [], "value": [], "grad_norm": []}
    _log(history, 0.0, value, gnorm)
    lam, v, n = top_curvature(objective, theta)
    hvps += n
    h_max = safety / max(lam, 1e-12)
    tau_0 = h_max  # before τ reaches the stiffest time scale, steps are ε of that scale
    # Armijo slack: the decrease test must not fail on round-off alone
    slack = 8 * torch.finfo(theta.dtype).eps
    tau, steps, since_refresh, reason, rejected, shrink = 0.0, 0, 0, "max_steps", 0, 1.0
    streak = 0  # consecutive rejections
    tau_mark, attempts = 0.0, 0  # stall watch: attempts since τ last advanced a nominal step
    while True:
        stop = _stop_reason(value, gnorm, gtol, tau, tau_max)
        if stop is not None:
            reason = stop
            break
        if steps >= max_steps:
            break
        nominal = min(h_max, step_ratio * max(tau, tau_0), tau_max - tau)
        if tau - tau_mark >= nominal:
            tau_mark, attempts = tau, 0
        elif attempts >= stall_attempts:
            reason = "stalled"
            break
        attempts += 1
        dt = min(shrink * h_max, step_ratio * max(tau, tau_0), tau_max - tau)
        d = g
        if order == 2:  # Heun: average the slopes at both ends of the Euler step
            _, g_pred = objective.value_and_grad(theta - dt * g)
            grad_evals += 1
            d = 0.5 * (g + g_pred)
        trial = theta - dt * d
        new_value, new_g = objective.value_and_grad(trial)
        grad_evals += 1
        slope = float(g @ d)  # −dU_α/dt along the step at its start
        if not (slope > 0 and new_value <= value - 0.5 * dt * slope + slack * max(1.0, abs(value))):
            # the curvature along d exceeds (g·d)/(dt‖d‖²): unstable or off the flow path. Retry
            # smaller; on the first rejection of a streak, with a fresh λ_max estimate.
            rejected += 1
            shrink /= 2
            streak += 1
            if streak == 1:
                lam, v, n = top_curvature(objective, theta, v0=v)
                hvps += n
                h_max = safety / max(lam, 1e-12)
            if dt < 1e-14 * max(1.0, tau_max):
                reason = "stalled"
                break
            continue
        theta, value, g = trial, new_value, new_g
        gnorm = float(g.norm())
        tau += dt
        steps += 1
        since_refresh += 1
        streak = 0
        shrink = min(1.0, shrink * 2)
        _log(history, tau, value, gnorm)
        progress(f"flow: tau {tau:.4g}/{tau_max:g}  U {value:.6g}  |g| {gnorm:.3e}  "
                 f"step {dt:.3g}  steps {steps}")
        if since_refresh >= refresh_every:
            lam, v, n = top_curvature(objective, theta, v0=v)
            hvps += n
            since_refresh = 0
            h_max = safety / max(lam, 1e-12)
    return FlowResult(theta, "flow", tau, steps, float(grad_evals), hvps, gnorm, value, reason,
                      time.perf_counter() - t0, history, rejected)


def paper_descent(objective: Objective, theta0: torch.Tensor, *, lr: float = 1e-4,
                  batch_size: int = 5000, max_epochs: int = 10_000, tau_max: float | None = None,
                  gtol: float = 0.0, check_every: int = 100, progress=None) -> FlowResult:
    """The paper's protocol: minibatch GD at fixed lr, batches in data order (no shuffle, last
    partial batch kept), for max_epochs or until τ = lr·steps reaches tau_max. ‖∇U_α‖ is checked
    against gtol every `check_every` epochs (a full gradient, counted in grad_evals)."""
    t0 = time.perf_counter()
    progress = progress or (lambda msg, force=False: None)
    n = objective.n
    batches = [objective.subset(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    theta = theta0.detach().clone()
    value, g = objective.value_and_grad(theta)
    gnorm = float(g.norm())
    grad_evals = 1.0
    history: dict = {"tau": [], "value": [], "grad_norm": []}
    _log(history, 0.0, value, gnorm)
    tau, steps, reason = 0.0, 0, "max_steps"
    for epoch in range(1, max_epochs + 1):
        for b in batches:
            if tau_max is not None and tau >= tau_max * (1 - 1e-12):
                break
            _, gb = b.value_and_grad(theta)
            # the L2 term is in every batch objective, as with weight decay on each step
            theta = theta - lr * gb
            grad_evals += b.n / n
            tau += lr
            steps += 1
        done = tau_max is not None and tau >= tau_max * (1 - 1e-12)
        if done or epoch % check_every == 0 or epoch == max_epochs:
            value, g = objective.value_and_grad(theta)
            gnorm = float(g.norm())
            grad_evals += 1
            _log(history, tau, value, gnorm)
            progress(f"paper: epoch {epoch}  tau {tau:.4g}  U {value:.6g}  |g| {gnorm:.3e}")
            stop = _stop_reason(value, gnorm, gtol, tau, tau_max)
            if stop is not None:
                reason = stop
                break
    return FlowResult(theta, "paper", tau, steps, grad_evals, 0, gnorm, value, reason,
                      time.perf_counter() - t0, history)


def find_minimum(objective: Objective, theta0: torch.Tensor, method: str = "flow",
                 progress=None, **options) -> FlowResult:
    if method == "flow":
        return gradient_flow(objective, theta0, progress=progress, **options)
    if method == "paper":
        return paper_descent(objective, theta0, progress=progress, **options)
    raise ValueError(f"unknown minimum-finding method {method!r}; known: flow, paper")
