"""Training: SGD at temperature T in the Lightning harness (`sgd`: TrainSettings, fit, resumable
checkpoints) and the signal handling that turns SIGTERM/SIGUSR1 into a checkpoint and exit 75
(`signals`). May import torch, pytorch_lightning, `shiftcurv.sweep.temperature`."""
