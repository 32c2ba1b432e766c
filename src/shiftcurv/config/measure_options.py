"""The names and default options of the curvature/sharpness measures
(`shiftcurv.landscape.measures.measure_point`). Free of torch, so the config checks that run when
the Snakefile is parsed can name unknown options without importing it."""

MEASURES = ("lambda_max", "lambda_min", "hessian_trace", "eps_sharpness", "nonuniformity",
            "grad_noise_trace", "grad_coherence")

DEFAULT_OPTIONS = {
    "backend": "auto",          # HVP backend (see HessianOperator)
    "dtype": None,              # compute dtype for curvature: None = the objective's
    "graph_memory": 2 * 2**30,  # bytes allowed for the kept first-order graph
    "eig_tol": None,            # Lanczos tolerance: None = 1e-8 (f64) / 1e-5 (f32)
    "eig_max_iter": 200,
    "trace_method": "hutch++",  # or "hutchinson"
    "trace_matvecs": 99,        # HVPs for the trace estimate
    "eps": (1e-3, 5e-4),        # ε of Keskar's ε-sharpness
    "eps_maxiter": 100,         # L-BFGS-B iterations per ε
    "nonuniformity_samples": 256,
    "nonuniformity_tol": 1e-6,
    "noise_samples": None,      # per-sample gradients over all samples (None) or a subsample
    "coherence_pairs": 32,
}
