"""Sampling SGD's steady state with a chain: pilot, burn-in, thinning, early stop, checkpoints.

The plan (../shared/notes/eq4-design.md, "Algorithm"):
1. pilot: `pilot_epochs` epochs from θ_SGD, the train loss after each; its integrated
   autocorrelation time τ_pilot (epochs, Sokal's window) sets the rest;
2. burn-in: max(`burn_in_min`, ⌈`burn_in_tau`·τ_pilot⌉) epochs in all (the pilot counts);
3. sampling: one kept sample every `thin` epochs (default ⌈τ_pilot⌉, so kept samples are roughly
   independent and a batch of ≥ 5 samples spans ≥ 5τ, what the jackknife needs), in `batches`
   contiguous batches of `samples / batches`; stop at a batch boundary when N_eff (from the kept
   test losses' own τ_int) reaches `n_eff` after at least `min_batches` batches, when all
   `samples` are kept, or before a batch that would pass `max_epochs` chain epochs.

A checkpoint (chain state, accumulator, plan) is written at every finished batch, so a killed
job loses at most one batch; the pilot and burn-in are redone if no batch was finished (cheaper
than checkpointing them: they are the smaller part). A stop signal is honoured at the next batch
boundary, after its checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

from shiftcurv.eq4.statistics import Eq4Accumulator, integrated_autocorrelation_time


@dataclass
class SamplingSettings:
    sampler: str = "rr"
    samples: int = 200  # kept samples at most
    batches: int = 20  # contiguous batches for the jackknife
    pilot_epochs: int = 20
    burn_in_min: int = 5
    burn_in_tau: float = 5.0
    thin: int | None = None  # epochs between kept samples; None: ⌈τ_pilot⌉
    max_thin: int = 50  # cap on the automatic thinning
    n_eff: float = 200.0  # early stop once N_eff reaches this
    min_batches: int = 10
    max_epochs: int = 2000  # chain epochs at most (burn-in + sampling)

    @property
    def per_batch(self) -> int:
        return max(1, self.samples // self.batches)


@dataclass
class ChainPlan:
    tau_pilot: float  # epochs
    burn_in: int  # epochs before the first kept sample's thinning interval
    thin: int  # epochs between kept samples


def effective_samples(acc: Eq4Accumulator, key: str = "test_loss") -> tuple[float, float]:
    """(τ_int in kept samples, N_eff = N / 2τ_int) from the kept samples' series `key`."""
    series = acc.series.get(key, [])
    tau = integrated_autocorrelation_time(series) if len(series) >= 4 else math.nan
    return tau, (len(series) / (2 * tau) if tau and math.isfinite(tau) else math.nan)


def run_chain(chain, acc: Eq4Accumulator, observe: Callable, train_loss: Callable,
              settings: SamplingSettings, *, checkpoint: Callable | None = None,
              resume: dict | None = None, stop=None,
              progress: Callable[[str], None] = lambda msg: None) -> dict:
    """Sample with `chain` (`.run_epoch()`, `.theta()`, `.take_grad_sq()`, `.epoch`, state I/O)
    into `acc`. `observe(θ)` -> scalars of a kept sample; `train_loss(θ)` -> U_tr for the pilot.
    `checkpoint(plan_dict, first_epoch)` is called at every finished batch; `resume` is the plan
    dict of a checkpoint already loaded into chain and acc.

    Returns {"status": ok | diverged | interrupted, "stop_reason": samples | n_eff | max_epochs
    | ..., "plan": {...}, "chain_epochs", "first_epoch"}."""
    if resume is not None:
        plan, first_epoch = ChainPlan(**resume["plan"]), int(resume["first_epoch"])
        progress(f"eq4: resumed at chain epoch {chain.epoch - first_epoch}, "
                 f"{acc.batches_done} batches done")
    else:
        first_epoch = chain.epoch
        pilot = []
        for _ in range(settings.pilot_epochs):
            if not math.isfinite(chain.run_epoch()):
                return _result("diverged", "pilot", None, chain, first_epoch)
            pilot.append(train_loss(chain.theta()))
        tau = integrated_autocorrelation_time(pilot) if len(pilot) >= 4 else 1.0
        tau = tau if math.isfinite(tau) else 1.0
        burn = max(settings.burn_in_min, math.ceil(settings.burn_in_tau * tau))
        thin = settings.thin or min(settings.max_thin, max(1, math.ceil(tau)))
        plan = ChainPlan(tau_pilot=tau, burn_in=burn, thin=int(thin))
        for _ in range(max(0, burn - settings.pilot_epochs)):
            if not math.isfinite(chain.run_epoch()):
                return _result("diverged", "burn_in", plan, chain, first_epoch)
        chain.take_grad_sq()  # the FDR's E|g_B|² counts sampling steps only
        progress(f"eq4: pilot τ_int {tau:.3g} epochs, burn-in {burn}, thin {plan.thin}, "
                 f"{settings.sampler} sampler")
    per_batch = settings.per_batch
    while True:
        if acc.full:
            return _result("ok", "samples", plan, chain, first_epoch)
        done = acc.batches_done
        if done >= settings.min_batches:
            _, n_eff = effective_samples(acc)
            if n_eff >= settings.n_eff:
                return _result("ok", "n_eff", plan, chain, first_epoch)
        if chain.epoch - first_epoch + per_batch * plan.thin > settings.max_epochs:
            return _result("ok" if done >= 2 else "too_short", "max_epochs", plan, chain,
                           first_epoch)
        for _ in range(per_batch):
            for _ in range(plan.thin):
                if not math.isfinite(chain.run_epoch()):
                    return _result("diverged", "sampling", plan, chain, first_epoch)
            theta = chain.theta()
            acc.add(theta, grad_sq=chain.take_grad_sq(), **observe(theta))
        if checkpoint is not None:
            checkpoint({"plan": asdict(plan), "first_epoch": first_epoch})
        progress(f"eq4: batch {acc.batches_done}/{acc.n_batches}, chain epoch "
                 f"{chain.epoch - first_epoch}")
        if stop is not None and stop.requested:
            return _result("interrupted", stop.signal, plan, chain, first_epoch)


def _result(status, reason, plan, chain, first_epoch) -> dict:
    return {"status": status, "stop_reason": reason,
            "plan": asdict(plan) if plan is not None else None,
            "chain_epochs": chain.epoch - first_epoch, "first_epoch": first_epoch}
