"""Hessian-vector products and λ_max on a 15k-parameter MLP: a script printing figures (not a test).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_hessian.py [--threads N] [--reps R]

Model 40→100→100→10 (15,210 parameters) on MNIST-1D-shaped synthetic data: x ~ N(0, 1) of shape
(4000, 40), labels from a random tanh teacher, briefly trained by SGD so the point is not the
initialisation. Prints
  1. the cost of one HVP relative to one gradient on the same data, measured in the same run,
     for each backend, in float32 and float64 (goal: ≤ 1.6× for the default);
  2. HVPs and wall time to λ_max at 1e-8 relative error (float64), for our Lanczos, scipy's
     eigsh (ARPACK) and PyHessian-style power iteration, against a machine-precision reference
     (goal: ≤ 25 HVPs);
  3. λ_min and a Hutch++ trace, for scale;
  4. the time of each measure of `measures.measure_point` with its default options.
Runs in well under 2 minutes on one CPU core.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from shiftcurv.landscape import eigen, hessian, measures, trace
from shiftcurv.landscape.objective import Objective


def build_problem(seed: int = 0, n: int = 4000, dim: int = 40, classes: int = 10):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    w1 = torch.randn(dim, 32, generator=g) / dim**0.5
    w2 = torch.randn(32, classes, generator=g) * 2
    y = (torch.tanh(x @ w1) @ w2).argmax(1)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(dim, 100), torch.nn.ReLU(),
                                torch.nn.Linear(100, 100), torch.nn.ReLU(),
                                torch.nn.Linear(100, classes))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(5):  # brief SGD, B = 100
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, 100):
            b = perm[i:i + 100]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()
    return model, x, y


def gradient(obj: Objective, theta: torch.Tensor, chunk: int):
    """One full gradient with the same loss function and chunks the HVP uses."""
    t = theta.clone().requires_grad_(True)
    out = torch.zeros_like(theta)
    for xc, yc in obj.chunks(chunk):
        out += torch.autograd.grad(obj.loss_sum(t, xc, yc), t)[0]
    return out


def _interleaved(fs: dict, reps: int) -> dict:
    """Median time of each function, timed round-robin so drifts in machine load hit all alike;
    returns per-function lists of the per-round times."""
    for f in fs.values():  # warm-up
        f()
    rounds: dict = {k: [] for k in fs}
    for _ in range(reps):
        for k, f in fs.items():
            t0 = time.perf_counter()
            f()
            rounds[k].append(time.perf_counter() - t0)
    return rounds


def _ratio(rounds: dict, num: str, den: str) -> float:
    return statistics.median(a / b for a, b in zip(rounds[num], rounds[den], strict=True))


def cost_table(model, x, y, reps: int) -> None:
    print(f"1. one HVP / one gradient on the same data, interleaved in the same run "
          f"(median over {reps} rounds of the per-round ratio)")
    print("   a) each backend at a given chunk size, against the gradient at that chunk size")
    print(f"   {'dtype':8s} {'chunk':>6s} {'gradient ms':>12s}  " + "  ".join(
        f"{b:>20s}" for b in hessian.BACKENDS) + f"  {'graph build':>12s}")
    defaults = {}
    for dtype in (torch.float32, torch.float64):
        for chunk in (4096, 1000):
            obj = Objective(model, x, y, dtype=dtype, chunk_size=chunk)
            theta = obj.theta_of()
            v = torch.randn(obj.dim, dtype=dtype)
            ops = {b: hessian.HessianOperator(obj, theta, backend=b, chunk_size=chunk)
                   for b in hessian.BACKENDS}
            t0 = time.perf_counter()
            ops["kept-graph"](v)  # builds the first-order graph, then one HVP
            build = time.perf_counter() - t0
            fs = {"grad": lambda o=obj, t=theta, c=chunk: gradient(o, t, c)}
            fs.update({b: (lambda op=op, v=v: op(v)) for b, op in ops.items()})
            if chunk == 4096:  # the objective's default: also time the default operator
                default = hessian.HessianOperator(obj, theta)
                default(v)
                fs["default"] = lambda op=default, v=v: op(v)
                fs["value_and_grad"] = lambda o=obj, t=theta: o.value_and_grad(t)
            rounds = _interleaved(fs, reps)
            t_grad = statistics.median(rounds["grad"])
            print(f"   {str(dtype)[6:]:8s} {chunk:6d} {1e3 * t_grad:12.2f}  "
                  + "  ".join(f"{_ratio(rounds, b, 'grad'):19.2f}x" for b in hessian.BACKENDS)
                  + f"  {build / t_grad:11.2f}x")
            if chunk == 4096:
                defaults[dtype] = (default.backend, default.chunk_size,
                                   _ratio(rounds, "default", "value_and_grad"))
    print("   graph build: first-order graph (create_graph) + first HVP, once per point θ")
    print("   b) the default operator (auto backend and chunk) against Objective.value_and_grad "
          "(its default chunk 4096)")
    for dtype, (backend, chunk, r) in defaults.items():
        print(f"   {str(dtype)[6:]:8s} backend {backend}, chunk {chunk}: {r:.2f}x")


def power_iteration(op, tol: float, max_iter: int, seed: int = 0):
    """PyHessian-style: normalised power iteration, stop on relative change of the Rayleigh
    quotient below tol."""
    v = eigen._probe_vector(op.dim, seed, dtype=op.dtype)
    v /= v.norm()
    lam = None
    for i in range(1, max_iter + 1):
        hv = op(v)
        new = float(v.dot(hv))
        v = hv / hv.norm()
        if lam is not None and abs(new - lam) <= tol * abs(new):
            return new, i
        lam = new
    return lam, max_iter


def eigen_table(model, x, y) -> None:
    obj = Objective(model, x, y, dtype=torch.float64)
    theta = obj.theta_of()
    op = hessian.HessianOperator(obj, theta)
    op(torch.zeros(obj.dim, dtype=torch.float64))  # build the kept graph outside the timings
    ref = eigen.eigsh(op, which="LA", tol=0.0).eigenvalues[0]
    print(f"\n2. λ_max (float64, backend {op.backend}); reference by eigsh tol=0: {ref:.15g}")
    print(f"   {'method':40s} {'HVPs':>5s} {'seconds':>8s} {'rel. error':>11s}")

    def row(name, f):
        start = op.n_hvp
        t0 = time.perf_counter()
        val = f()
        dt = time.perf_counter() - t0
        print(f"   {name:40s} {op.n_hvp - start:5d} {dt:8.3f} {abs(val - ref) / abs(ref):11.2e}")

    row("Lanczos (ours), tol 1e-8", lambda: eigen.lambda_max(op, tol=1e-8).eigenvalues[0])
    row("Lanczos (ours), tol 1e-10", lambda: eigen.lambda_max(op, tol=1e-10).eigenvalues[0])
    row("scipy eigsh (ARPACK), tol 1e-8",
        lambda: eigen.eigsh(op, which="LA", tol=1e-8).eigenvalues[0])
    row("power iteration, tol 1e-3 (PyHessian)", lambda: power_iteration(op, 1e-3, 100)[0])
    row("power iteration, tol 1e-10, ≤ 300 HVPs", lambda: power_iteration(op, 1e-10, 300)[0])

    print("\n3. for scale")
    t0 = time.perf_counter()
    start = op.n_hvp
    lo = eigen.lambda_min(op)
    print(f"   λ_min {lo.eigenvalues[0]:.6g} (Lanczos, tol 1e-8 of the spectral radius): "
          f"{op.n_hvp - start} HVPs, {time.perf_counter() - t0:.2f} s, "
          f"converged={lo.converged}")
    t0 = time.perf_counter()
    tr = trace.hutchpp(op, op.dim, n_matvec=99)
    print(f"   tr H {tr.trace:.6g} ± {tr.stderr:.2g} (Hutch++, 99 HVPs): "
          f"{time.perf_counter() - t0:.2f} s")


def measure_table(model, x, y) -> None:
    """Every measure of `measure_point` with its defaults (float32, as a run would call it)."""
    obj = Objective(model, x, y, l2=1e-5)
    out = measures.measure_point(obj, obj.theta_of(), measures.MEASURES, lr=0.1,
                                 batch_size=100, seed=0)
    print("\n4. measure_point, all measures, default options (float32, η = 0.1, B = 100)")
    prefix = {"nonuniformity": ("wme_",), "grad_noise_trace": ("grad_noise", "grad_mean"),
              "grad_coherence": ("grad_coherence", "grad_cosine")}
    for name in measures.MEASURES:
        keys = [k for k in out if k.startswith(prefix.get(name, (name,)))
                and not k.endswith("seconds")]
        shown = ", ".join(f"{k} {out[k]:.4g}" for k in keys)
        print(f"   {name:17s} {out[name + '_seconds']:6.2f} s  {shown}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: as set)")
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, x, y = build_problem()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"MLP 40-100-100-10: {n_params} parameters, {len(y)} samples, "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)\n")
    cost_table(model, x, y, args.reps)
    eigen_table(model, x, y)
    measure_table(model, x, y)
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
