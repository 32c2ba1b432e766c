"""The GPU path end to end: a short train → minimize (train and test) → measure of an image net
on random CIFAR-shaped data, through the same `shiftcurv` CLI steps the workflow runs, on
`--device` (cuda by default). Prints SGD steps/s, seconds per step, and the peak GPU memory of
each step (torch.cuda.max_memory_allocated, reset per step), plus the CPU figure for the same
work as the baseline when --cpu-baseline is given.

    python benchmarks/bench_gpu.py                        # vgg16, 2000/500 images, cuda
    python benchmarks/bench_gpu.py --device cpu --n-train 200 --n-test 100 --epochs 1  # smoke
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from shiftcurv import data
from shiftcurv.cli import main


def random_cifar(n_train: int, n_test: int, seed: int = 0) -> data.Dataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_train + n_test, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, size=n_train + n_test)
    return data.Dataset("random-cifar", x[:n_train], y[:n_train], x[n_train:], y[n_train:],
                        n_classes=10, meta={"seed": seed})


def step(argv: list[str], device: str) -> dict:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    code = main(argv)
    if device == "cuda":
        torch.cuda.synchronize()
    out = {"seconds": time.perf_counter() - t0, "exit": code}
    if device == "cuda":
        out["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def run(arch: dict, ds: data.Dataset, device: str, args, work: Path) -> dict:
    npz = work / "d.npz"
    data.save(ds, npz)
    common = {"arch": arch, "l2": 1e-5, "device": device}
    train = {**common, "temperature": 5e-5, "batch_size": 100, "seed": 0,
             "epochs_fixed": args.epochs, "checkpoint_every": 0}
    res = {"train": step(["train", "--data", str(npz), "--settings", json.dumps(train),
                          "--out-weights", str(work / "sgd.safetensors"), "--out-record",
                          str(work / "train.json")], device)}
    steps = json.loads((work / "train.json").read_text())["steps"]
    sgd_seconds = json.loads((work / "train.json").read_text())["wall_seconds"]
    res["train"].update(steps=steps, steps_per_s=steps / sgd_seconds)
    for split in ("train", "test"):
        mn = {**common, "split": split, "method": "flow", "tau_max": args.tau,
              "dtype": args.min_dtype}
        res[f"min_{split}"] = step(["minimize", "--data", str(npz), "--init",
                                    str(work / "sgd.safetensors"), "--init-record",
                                    str(work / "train.json"), "--settings", json.dumps(mn),
                                    "--out-weights", str(work / f"theta_{split}.safetensors"),
                                    "--out-record", str(work / f"min_{split}.json")], device)
        rec = json.loads((work / f"min_{split}.json").read_text())
        res[f"min_{split}"].update(grad_evals=rec.get("grad_evals"), tau=rec.get("tau"))
    ms = {**common, "seed": 0, "dtype": args.measure_dtype, "points_per_unit": 5,
          "hessian": {"measures": ["lambda_max"], "points": ["train"],
                      "options": {"dtype": "float32"}}}
    res["measure"] = step(["measure", "--data", str(npz), "--theta-train",
                           str(work / "theta_train.safetensors"), "--theta-test",
                           str(work / "theta_test.safetensors"), "--train-record",
                           str(work / "train.json"), "--min-records", str(work / "min_train.json"),
                           str(work / "min_test.json"), "--settings", json.dumps(ms), "--out",
                           str(work / "measure.json")], device)
    return res


def main_() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="vgg16")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--tau", type=float, default=0.5)
    p.add_argument("--min-dtype", default="float32")
    p.add_argument("--measure-dtype", default="float64")
    p.add_argument("--cpu-baseline", action="store_true", help="also run the same on CPU")
    args = p.parse_args()
    ds = random_cifar(args.n_train, args.n_test)
    devices = [args.device] + (["cpu"] if args.cpu_baseline and args.device != "cpu" else [])
    results = {}
    for device in devices:
        with tempfile.TemporaryDirectory() as tmp:
            results[device] = run({"type": args.arch}, ds, device, args, Path(tmp))
    for device, res in results.items():
        print(f"{args.arch} on {device} ({args.n_train}/{args.n_test} random CIFAR-shaped):")
        for name, r in res.items():
            extra = "".join(f"  {k} {v:.4g}" if isinstance(v, float) else f"  {k} {v}"
                            for k, v in r.items() if k not in ("seconds",))
            print(f"  {name:10s} {r['seconds']:8.2f} s{extra}")
    if len(results) == 2:
        for name in results[devices[0]]:
            ratio = results["cpu"][name]["seconds"] / results[devices[0]][name]["seconds"]
            print(f"  {name}: {devices[0]} is {ratio:.1f}x faster than cpu")


if __name__ == "__main__":
    main_()
