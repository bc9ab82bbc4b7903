"""AG-Net's two small networks for keep-vectors: a generator and a surrogate predictor (CPU, tiny).

Our search space is a flat vector of operator groups, not a cell DAG, so the generator is an MLP
from a latent z ~ U[-3, 3]^d to one logit per group (AG-Net generates a graph node by node; the
idea carried over is "a latent space the search learns to sample from"). The surrogate is an MLP on
the generator's *continuous* output (sigmoid of the logits), predicting validation accuracy and,
with a latency objective, latency. Because it reads the generator's output, its error gradient
flows into the generator: the predictor shapes where the generator samples (AG-Net §3.2).

One training round (`fit`) on the evaluated set D with rank weights w:
- generator: batches drawn from D with probability ∝ w (toward the best); loss
  (1-α)·BCE(G(z), x) + α·(S(σ(G(z))) - y)², each sample's loss multiplied by its normalised weight;
- surrogate: additionally regressed on all of D's real keep-vectors at every step (D is small), so
  it ranks unseen candidates by what was measured, not only by what the best ones scored.

Targets are standardised per round (accuracies on digits sit within a few points of each other).
Everything is seeded through one `torch.Generator`; torch runs on one thread while these train.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn


@contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class AGNet:
    """Generator + surrogate over keep-vectors of `size` groups; `outputs` = 1 (accuracy) or 2 (+latency)."""

    def __init__(self, size: int, *, outputs: int = 1, latent_dim: int = 16, hidden: int = 64, seed: int = 0,
                 lr: float = 1e-3, alpha: float = 0.9, batch_size: int = 16) -> None:
        self.size, self.outputs, self.latent_dim = size, outputs, latent_dim
        self.alpha, self.batch_size = alpha, batch_size
        self.random = torch.Generator().manual_seed(seed)
        with _one_thread():
            torch.manual_seed(seed)
            self.generator = _mlp([latent_dim, hidden, hidden, size])
            self.surrogate = _mlp([size, hidden, hidden, outputs])
        params = list(self.generator.parameters()) + list(self.surrogate.parameters())
        self.optimizer = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))
        self._mean = np.zeros(outputs)
        self._std = np.ones(outputs)

    def _latent(self, n: int) -> torch.Tensor:
        return torch.rand(n, self.latent_dim, generator=self.random) * 6.0 - 3.0

    def fit(self, keeps: np.ndarray, targets: np.ndarray, weights: np.ndarray, ticks: int, min_steps: int = 200) -> float:
        """One round of training on D (`keeps` N×size, `targets` N×outputs, rank `weights` N); returns
        the last batch's loss. `ticks` passes of N samples each, but at least `min_steps` batches (while
        D is small, a few passes are too few steps for the surrogate to learn anything)."""
        x = torch.as_tensor(np.asarray(keeps, dtype=np.float32))
        targets = np.asarray(targets, dtype=np.float64).reshape(len(x), self.outputs)
        self._mean, self._std = targets.mean(0), targets.std(0) + 1e-6
        y = torch.as_tensor(((targets - self._mean) / self._std).astype(np.float32))
        w = torch.as_tensor(np.asarray(weights, dtype=np.float64) / np.mean(weights), dtype=torch.float32)
        steps = max(min_steps, ticks * len(x) // self.batch_size)
        loss = torch.zeros(())
        with _one_thread():
            self.generator.train()
            self.surrogate.train()
            for _ in range(steps):
                pick = torch.multinomial(w, self.batch_size, replacement=True, generator=self.random)
                logits = self.generator(self._latent(self.batch_size))
                recon = nn.functional.binary_cross_entropy_with_logits(logits, x[pick], reduction="none").mean(1)
                coupled = ((self.surrogate(torch.sigmoid(logits)) - y[pick]) ** 2).mean(1)
                direct = ((self.surrogate(x) - y) ** 2).mean()
                loss = (w[pick] * ((1 - self.alpha) * recon + self.alpha * coupled)).mean() + direct
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
        return float(loss.detach())

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """`n` raw samples: (Bernoulli draws of the keep-vector, the logits that drew them)."""
        with _one_thread(), torch.no_grad():
            self.generator.eval()
            logits = self.generator(self._latent(n))
            draws = torch.rand(logits.shape, generator=self.random) < torch.sigmoid(logits)
        return draws.numpy(), logits.numpy().astype(np.float64)

    def predict(self, keeps: np.ndarray) -> np.ndarray:
        """Predicted targets (N×outputs, in the units they were given to `fit`) for keep-vectors."""
        with _one_thread(), torch.no_grad():
            self.surrogate.eval()
            out = self.surrogate(torch.as_tensor(np.asarray(keeps, dtype=np.float32))).numpy().astype(np.float64)
        return out * self._std + self._mean
