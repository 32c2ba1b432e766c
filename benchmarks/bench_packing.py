"""Packed cells vs one process per cell (issue 16). Two modes.

CPU (default): the default sweep's training jobs, MNIST-1D 2000 samples (1600 train), B = 100,
T in {5e-4, 1e-3, 2e-3, 4e-3} x seeds 0-2 (12 cells per arch, epochs 600/300/150/75 from
config.yaml's E.T rule), for the default MLP and CNN. Each cell once through the real
`shiftcurv train` in its own subprocess (import costs count, as in the sweep), then the same 12
cells through `shiftcurv train-pack` in packs of K (subprocesses too). Prints CPU-seconds
(user + sys of the child, os.wait4) and wall seconds per cell, peak RSS per cell (the child's
maxrss / cells in it) and the ratios, all measured in one run; the packed weights are checked
against the unpacked ones (identical, or the largest difference).

    OMP_NUM_THREADS=1 python benchmarks/bench_packing.py [--packs 12,4] [--archs mlp,cnn1d]

Throughput (`--throughput`, implied by `--device cuda`): cells per GPU-hour and memory
allocated per cell, in process (fit_packed), for the default MLP on MNIST-1D at K = 1, 16, 64,
256 and VGG9 (with BN) on CIFAR-shaped random data at K = 1, 4, 8. A "cell" is `--cell-epochs`
epochs (default 281: the mean budget of the default sweep's 12 cells; VGG9: 100 epochs of
`--vgg-samples` images). Timed over `--timed-epochs` epochs after one warm-up epoch. Also on
CPU for correctness with small K:

    python benchmarks/bench_packing.py --device cuda
    python benchmarks/bench_packing.py --device cpu --throughput --mlp-k 1,4 --vgg-k 1,2 \\
        --vgg-samples 200 --vgg-channels 8,16,32 --timed-epochs 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from shiftcurv import data, models

ARCHS = {"mlp": {"type": "mlp", "widths": [100, 100]},
         "cnn1d": {"type": "cnn1d", "channels": [16, 16, 16]}}
TEMPERATURES = (5e-4, 1e-3, 2e-3, 4e-3)
SEEDS = (0, 1, 2)
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def cell_settings(arch: dict, t: float, seed: int, epochs_ref: float, device="cpu") -> dict:
    return {"arch": arch, "temperature": t, "batch_size": 100, "seed": seed, "l2": 1e-5,
            "epochs_ref": epochs_ref, "temperature_ref": 2e-3, "max_epochs": 600,
            "checkpoint_every": 25, "device": device}


def child(argv: list[str]) -> dict:
    """Run `shiftcurv ARGV` in a subprocess: its CPU seconds, wall seconds and peak RSS."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "shiftcurv.cli", *argv], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"shiftcurv {argv[0]} failed ({proc.returncode}):\n{err.decode()}")
    return {"cpu": usage.ru_utime + usage.ru_stime, "wall": time.perf_counter() - t0,
            "rss_mib": usage.ru_maxrss / 1024}


def weights(path: Path) -> torch.Tensor:
    from safetensors.torch import load_file

    return torch.cat([t.reshape(-1).double() for t in load_file(str(path)).values()])


def cpu_mode(args) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-packing-"))
    npz = work / "mnist1d.npz"
    data.save(data.build("mnist1d", num_samples=2000), npz)
    packs = [int(k) for k in args.packs.split(",")]
    print(f"MNIST-1D 1600 train, B=100, 12 cells per arch (T {TEMPERATURES} x seeds {SEEDS}), "
          f"epochs_ref {args.epochs_ref} at T_ref 2e-3, 1 thread per process; work in {work}")
    print(f"{'arch':>6} {'how':>14} {'procs':>5} {'CPU s/cell':>10} {'wall s/cell':>11} "
          f"{'RSS MiB/cell':>12} {'CPU ratio':>9} {'weights vs unpacked':>22}")
    for name in args.archs.split(","):
        arch = ARCHS[name]
        cells = [(t, s) for t in TEMPERATURES for s in SEEDS]
        out = work / name / "unpacked"
        runs = [child(["train", "--data", str(npz), "--settings",
                       json.dumps(cell_settings(arch, t, s, args.epochs_ref)),
                       "--out-weights", str(out / f"{i}.safetensors"),
                       "--out-record", str(out / f"{i}.json"), "--threads", "1"])
                for i, (t, s) in enumerate(cells)]
        base_cpu = sum(r["cpu"] for r in runs) / len(cells)
        print(f"{name:>6} {'one per cell':>14} {len(runs):>5} {base_cpu:>10.2f} "
              f"{sum(r['wall'] for r in runs) / len(cells):>11.2f} "
              f"{max(r['rss_mib'] for r in runs):>12.0f} {1.0:>9.2f} {'':>22}")
        for k in packs:
            out = work / name / f"pack{k}"
            # packs mix temperatures: cell i goes to pack i % (12 / k)
            n_packs = -(-len(cells) // k)
            groups = [list(range(len(cells)))[j::n_packs] for j in range(n_packs)]
            runs = []
            for group in groups:
                spec = [{"settings": cell_settings(arch, *cells[i], args.epochs_ref),
                         "out_weights": str(out / f"{i}.safetensors"),
                         "out_record": str(out / f"{i}.json")} for i in group]
                (work / "cells.json").write_text(json.dumps(spec))
                run = child(["train-pack", "--data", str(npz), "--cells",
                             f"@{work / 'cells.json'}", "--threads", "1"])
                runs.append(run | {"k": len(group)})
            cpu = sum(r["cpu"] for r in runs) / len(cells)
            diffs = [float((weights(out / f"{i}.safetensors")
                            - weights(work / name / "unpacked" / f"{i}.safetensors")).abs().max())
                     for i in range(len(cells))]
            same = "identical" if max(diffs) == 0 else f"max |diff| {max(diffs):.2g}"
            print(f"{name:>6} {f'packed K={k}':>14} {len(runs):>5} {cpu:>10.2f} "
                  f"{sum(r['wall'] for r in runs) / len(cells):>11.2f} "
                  f"{max(r['rss_mib'] / r['k'] for r in runs):>12.0f} {base_cpu / cpu:>9.2f} "
                  f"{same:>22}")


def random_cifar(n: int, seed: int = 0) -> data.Dataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, size=n)
    return data.Dataset("random-cifar", x, y, x[:10], y[:10], n_classes=10, meta={"seed": seed})


def throughput(name: str, arch: dict, ds: data.Dataset, ks: list[int], args) -> None:
    from shiftcurv.train.packed import fit_packed
    from shiftcurv.train.sgd import TrainSettings, TrainState

    cuda = args.device == "cuda"
    x, y = ds.tensors("train", dtype=torch.float32)
    cell_epochs = args.cell_epochs if name == "mlp" else args.vgg_cell_epochs
    first = None
    for k in ks:
        nets = []
        for i in range(k):
            torch.manual_seed(i)
            nets.append(models.build(arch, ds.in_shape, ds.n_classes))

        def settings(epochs, i):
            t = TEMPERATURES[i % len(TEMPERATURES)]
            return TrainSettings(temperature=t, batch_size=100, seed=i, epochs_fixed=epochs,
                                 checkpoint_every=0, device=args.device)

        fit_packed(nets, x, y, [settings(1, i) for i in range(k)])  # warm-up: 1 epoch
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        states = fit_packed(nets, x, y, [settings(1 + args.timed_epochs, i) for i in range(k)],
                            [TrainState(epoch=1) for _ in range(k)])
        # the epochs' own time (each cell's share, summed; the epoch ends in a device sync),
        # without the Trainer's start-up
        seconds = sum(sum(st.history["seconds"]) for st in states) / args.timed_epochs
        mem = torch.cuda.max_memory_allocated() / 2**20 / k if cuda else float("nan")
        w = torch.cat([p.detach().reshape(-1) for p in nets[0].parameters()])
        first = w if first is None else first
        diff = float((w - first).abs().max())
        per_hour = 3600 / (seconds * cell_epochs) * k
        print(f"{name:>6} {k:>5} {seconds:>12.4f} {per_hour:>14.1f} {mem:>16.1f} "
              f"{diff:>18.2g}")


def throughput_mode(args) -> None:
    torch.set_num_threads(max(1, args.threads))
    print(f"device {args.device}; cells per hour = K x 3600 / (s per pack epoch x epochs per "
          f"cell: MLP {args.cell_epochs}, VGG9 {args.vgg_cell_epochs}); memory = peak allocated "
          f"/ K; |w0 - w0(K=first)|: cell 0 after the same epochs in each pack")
    print(f"{'arch':>6} {'K':>5} {'s/pack epoch':>12} {'cells/hour':>14} "
          f"{'MiB alloc/cell':>16} {'cell 0 vs first K':>18}")
    mnist = data.build("mnist1d", num_samples=2000)
    throughput("mlp", ARCHS["mlp"], mnist, [int(k) for k in args.mlp_k.split(",")], args)
    vgg = {"type": "vgg9", "channels": [int(c) for c in args.vgg_channels.split(",")]}
    throughput("vgg9", vgg, random_cifar(args.vgg_samples), [int(k) for k in
                                                           args.vgg_k.split(",")], args)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--throughput", action="store_true", help="the GPU table (on --device)")
    p.add_argument("--packs", default="12", help="CPU mode: pack sizes K, comma separated")
    p.add_argument("--archs", default="mlp,cnn1d", help="CPU mode: of " + ", ".join(ARCHS))
    p.add_argument("--epochs-ref", type=float, default=150.0,
                   help="CPU mode: the E.T rule's E at T_ref 2e-3 (config.yaml: 150)")
    p.add_argument("--mlp-k", default="1,16,64,256")
    p.add_argument("--vgg-k", default="1,4,8")
    p.add_argument("--vgg-samples", type=int, default=5000)
    p.add_argument("--vgg-channels", default="64,128,256")
    p.add_argument("--cell-epochs", type=int, default=281)
    p.add_argument("--vgg-cell-epochs", type=int, default=100)
    p.add_argument("--timed-epochs", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if args.device == "cuda" or args.throughput:
        throughput_mode(args)
    else:
        torch.set_num_threads(1)
        cpu_mode(args)


if __name__ == "__main__":
    main()
