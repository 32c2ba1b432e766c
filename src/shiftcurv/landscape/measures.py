"""The measure step: the curvature and sharpness measures of U_α at one point θ, as flat scalars.

`measure_point` computes the measures named in `shiftcurv.config.measure_options.MEASURES`
(docs/measures.md) from the pieces of this package:

    lambda_max, lambda_min   extreme eigenvalues of H = ∇²U_α(θ)      (`eigen`, on `hessian`)
    hessian_trace            tr H by Hutch++ or Hutchinson              (`trace`, on `hessian`)
    eps_sharpness            Keskar et al.'s ε-sharpness                (`sharpness`)
    nonuniformity            Wu, Ma & E's s = √λ_max(Σ) and their stability verdict (`sharpness`)
    grad_noise_trace         tr D of the per-sample gradient covariance (`sharpness`)
    grad_coherence           the minibatch regret ‖g₂‖(1 − cos(g₁, g₂)) (`sharpness`)

It imports them all and no module of the landscape imports it: the top of the landscape's import
graph (`shiftcurv.commands.measure` calls it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from shiftcurv import ShiftcurvError
from shiftcurv.config.measure_options import DEFAULT_OPTIONS, MEASURES
from shiftcurv.landscape import sharpness
from shiftcurv.landscape.eigen import lambda_max, lambda_min
from shiftcurv.landscape.hessian import HessianOperator
from shiftcurv.landscape.objective import Objective
from shiftcurv.landscape.trace import hutchinson, hutchpp


def _flag(b: bool) -> float:
    return 1.0 if b else 0.0


def measure_point(objective: Objective, theta: torch.Tensor, measures: Sequence[str], *,
                  lr: float, batch_size: int, seed: int = 0,
                  options: dict | None = None) -> dict[str, float]:
    """Compute the named measures of U_α at θ as flat scalars (NaN never hides a failure: a
    measure that fails raises). `lr`, `batch_size`: the run's SGD (η, B), for Wu–Ma–E's stability
    verdict, the minibatch noise and coherence. Keys per measure (see docs/measures.md):

    lambda_max      lambda_max, lambda_max_hvps, lambda_max_converged, lambda_max_error
    lambda_min      lambda_min, lambda_min_hvps, lambda_min_converged, lambda_min_error
    hessian_trace   hessian_trace, hessian_trace_stderr, hessian_trace_hvps
    eps_sharpness   eps_sharpness_{ε:g}, with _iterations, _evaluations, _maxiter, _restarts
    nonuniformity   wme_sharpness, wme_nonuniformity, wme_nonuniformity_samples, wme_eta_a,
                    wme_s_bound, wme_gd_stable, wme_sgd_stable, wme_nonuniformity_hvps
    grad_noise_trace grad_noise_trace, grad_noise_trace_batch, grad_mean_norm_sq,
                    grad_noise_samples
    grad_coherence  grad_coherence, grad_coherence_stderr, grad_cosine, grad_coherence_pairs
    and {measure}_seconds for each.
    """
    unknown = [m for m in measures if m not in MEASURES]
    if unknown:
        raise ShiftcurvError(f"unknown measure(s) {', '.join(map(repr, unknown))}; known: "
                             + ", ".join(MEASURES))
    opts = dict(DEFAULT_OPTIONS)
    bad = [k for k in (options or {}) if k not in opts]
    if bad:
        raise ShiftcurvError(f"unknown measure option(s) {', '.join(map(repr, bad))}; known: "
                             + ", ".join(opts))
    opts.update(options or {})
    dtype = opts["dtype"]
    if isinstance(dtype, str):
        dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    theta = theta.detach().to(objective.dtype)
    out: dict[str, float] = {}
    op = None

    def operator():
        nonlocal op
        if op is None:
            op = HessianOperator(objective, theta, backend=opts["backend"], dtype=dtype,
                                 graph_memory=opts["graph_memory"])
        return op

    for name in measures:
        t0 = time.perf_counter()
        if name in ("lambda_max", "lambda_min"):
            h = operator()
            f = lambda_max if name == "lambda_max" else lambda_min
            r = f(h, tol=opts["eig_tol"], max_iter=opts["eig_max_iter"], seed=seed)
            out[name] = float(r.eigenvalues[0])
            out[f"{name}_hvps"] = float(r.n_matvec)
            out[f"{name}_converged"] = _flag(r.converged)
            out[f"{name}_error"] = float(r.error_estimate[0])
        elif name == "hessian_trace":
            h = operator()
            if opts["trace_method"] == "hutchinson":
                t = hutchinson(h, h.dim, n_probes=opts["trace_matvecs"], seed=seed)
            elif opts["trace_method"] == "hutch++":
                t = hutchpp(h, h.dim, n_matvec=opts["trace_matvecs"], seed=seed)
            else:
                raise ShiftcurvError(f"unknown trace_method {opts['trace_method']!r}; known: "
                                     "hutch++, hutchinson")
            out.update(hessian_trace=t.trace, hessian_trace_stderr=t.stderr,
                       hessian_trace_hvps=float(t.n_matvec))
        elif name == "eps_sharpness":
            for eps in opts["eps"]:
                r = sharpness.eps_sharpness(objective.value_and_grad, theta, eps,
                                            maxiter=opts["eps_maxiter"], seed=seed)
                key = f"eps_sharpness_{eps:g}"
                out[key] = r["eps_sharpness"]
                for k in ("iterations", "evaluations", "maxiter", "restarts"):
                    out[f"{key}_{k}"] = float(r[k])
        elif name == "nonuniformity":
            a = out.get("lambda_max")
            if a is None:
                r = lambda_max(operator(), tol=opts["eig_tol"], max_iter=opts["eig_max_iter"],
                               seed=seed)
                a = float(r.eigenvalues[0])
            nu = sharpness.nonuniformity(objective, theta, n_samples=opts["nonuniformity_samples"],
                                         seed=seed, tol=opts["nonuniformity_tol"], dtype=dtype)
            v = sharpness.wu_ma_e_stability(a, nu["nonuniformity"], lr=lr, batch_size=batch_size,
                                            n=objective.n)
            out.update(wme_sharpness=a, wme_nonuniformity=nu["nonuniformity"],
                       wme_nonuniformity_samples=float(nu["n_samples"]),
                       wme_nonuniformity_hvps=float(nu["n_matvec"]),
                       wme_eta_a=v["eta_a"], wme_s_bound=v["s_bound"],
                       wme_gd_stable=_flag(v["gd_stable"]), wme_sgd_stable=_flag(v["sgd_stable"]))
        elif name == "grad_noise_trace":
            r = sharpness.grad_noise_trace(objective, theta, n_samples=opts["noise_samples"],
                                           seed=seed, batch_size=batch_size)
            out.update(grad_noise_trace=r["trace"], grad_noise_trace_batch=r["trace_batch"],
                       grad_mean_norm_sq=r["mean_grad_norm_sq"],
                       grad_noise_samples=float(r["n_samples"]))
        elif name == "grad_coherence":
            r = sharpness.grad_coherence(objective, theta, batch_size,
                                         n_pairs=opts["coherence_pairs"], seed=seed)
            out.update(grad_coherence=r["coherence"], grad_coherence_stderr=r["stderr"],
                       grad_cosine=r["cosine"], grad_coherence_pairs=float(r["n_pairs"]))
        out[f"{name}_seconds"] = time.perf_counter() - t0
    return out
