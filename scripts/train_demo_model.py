"""Train the demo CNN that ships with attrib (``src/attrib/data/demo_cnn.npz``).

Deterministic: fixed seeds, ``torch.use_deterministic_algorithms(True)``,
data from :func:`attrib.demo_data` (NumPy, seeded). A few minutes on a
2-core CPU::

    python scripts/train_demo_model.py            # writes src/attrib/data/demo_cnn.npz
    python scripts/train_demo_model.py --out /tmp/demo_cnn.npz --epochs 2
    python scripts/train_demo_model.py --permute-labels   # writes demo_cnn_permuted.npz

``--permute-labels`` trains the same network on the same scenes with their
labels shuffled (a fixed permutation, seed 0): the model of the data
randomisation test of Adebayo et al. (2018), :func:`attrib.evaluate.data_randomization`.

Prints the training loss per epoch and the accuracy on a held-out generated
set (seed 12345, never used for training).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from attrib._demo import CLASS_NAMES, demo_data
from attrib_torch._demo import CHANNELS, DemoCNN

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "attrib" / "data" / "demo_cnn.npz"
PERMUTED_OUT = DEFAULT_OUT.with_name("demo_cnn_permuted.npz")
PERMUTATION_SEED = 0
TRAIN_SEED = 1
HELD_OUT_SEED = 12345


class TrainingCNN(torch.nn.Module):
    """:class:`DemoCNN` with batch normalisation after each convolution.

    Batch norm makes training on these scenes fast and reliable; after
    training it is folded into the convolutions (:func:`fold`), so the shipped
    model is the plain :class:`DemoCNN` (no normalisation layers, identical
    in torch and Flax).
    """

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.net = DemoCNN(classes=classes)
        self.bns = torch.nn.ModuleList(torch.nn.BatchNorm2d(c) for c in CHANNELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = F.max_pool2d(F.relu(self.bns[0](n.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bns[1](n.conv2(x))), 2)
        x = F.relu(self.bns[2](n.conv3(x)))
        x = F.relu(self.bns[3](n.conv4(x)))
        return n.fc(x.mean(dim=(2, 3)))


def fold(model: TrainingCNN) -> DemoCNN:
    """The plain :class:`DemoCNN` computing what ``model`` computes in eval mode."""
    folded = DemoCNN(classes=model.net.fc.out_features)
    state = {k: v.detach().clone() for k, v in model.net.state_dict().items()}
    for i, bn in enumerate(model.bns, start=1):
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        state[f"conv{i}.weight"] = state[f"conv{i}.weight"] * scale[:, None, None, None]
        state[f"conv{i}.bias"] = (state[f"conv{i}.bias"] - bn.running_mean) * scale + bn.bias.detach()
    folded.load_state_dict(state)
    return folded.eval()


def accuracy(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    model.eval()
    with torch.no_grad():
        x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
        logits = torch.cat([model(chunk) for chunk in x.split(256)])
    return float((logits.argmax(1).numpy() == labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None,
                        help=f"default {DEFAULT_OUT.name}, or {PERMUTED_OUT.name} with --permute-labels")
    parser.add_argument("--permute-labels", action="store_true",
                        help="train on randomly permuted labels (data randomisation test)")
    parser.add_argument("--train", type=int, default=6000, help="training scenes (default 6000)")
    parser.add_argument("--held-out", type=int, default=1000, help="held-out scenes (default 1000)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args()
    if args.out is None:
        args.out = PERMUTED_OUT if args.permute_labels else DEFAULT_OUT

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)

    start = time.perf_counter()
    train = demo_data(args.train, seed=TRAIN_SEED)
    test = demo_data(args.held_out, seed=HELD_OUT_SEED)
    x = torch.from_numpy(train.images.transpose(0, 3, 1, 2).copy())
    labels = train.labels
    if args.permute_labels:
        labels = np.random.default_rng(PERMUTATION_SEED).permutation(labels)
        print(f"labels permuted: {float((labels == train.labels).mean()):.3f} still match")
    y = torch.from_numpy(labels)
    print(f"data: {len(train)} training, {len(test)} held-out scenes "
          f"({time.perf_counter() - start:.1f} s)")

    model = TrainingCNN(classes=len(CLASS_NAMES))
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps = args.epochs * (len(train) // args.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=args.lr, total_steps=steps)
    order = torch.Generator().manual_seed(0)
    for epoch in range(args.epochs):
        model.train()
        permutation = torch.randperm(len(train), generator=order)
        total = 0.0
        for b in range(len(train) // args.batch):
            index = permutation[b * args.batch:(b + 1) * args.batch]
            batch = x[index]
            # horizontal flips keep every class's meaning
            if b % 2:
                batch = batch.flip(3)
            loss = F.cross_entropy(model(batch), y[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item()
        print(f"epoch {epoch + 1}/{args.epochs}: loss {total / (len(train) // args.batch):.4f}, "
              f"held-out accuracy {accuracy(model, test.images, test.labels):.4f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)

    trained = model.eval()
    model = fold(trained)
    with torch.no_grad():
        probe = x[:256]
        gap = float((model(probe) - trained(probe)).abs().max())
    print(f"batch norm folded into the convolutions (max logit change {gap:.2e})")
    weights = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **weights)
    print(f"held-out accuracy {accuracy(model, test.images, test.labels):.4f}; "
          f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB) "
          f"in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
