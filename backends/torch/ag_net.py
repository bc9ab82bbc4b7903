"""AG-Net's two small networks for keep-vectors: a generator and a surrogate predictor (CPU, tiny).

Our search space is a flat vector of operator groups, not a cell DAG, so the generator is an MLP
from a latent z ~ U[-3, 3]^d (d = 32, AG-Net's graph embedding size) to one logit per group (AG-Net
generates a graph node by node; the idea carried over is "a latent space the search learns to
sample from"). The surrogate is an MLP on the generator's *continuous* output (sigmoid of the
logits), predicting validation accuracy and, with a latency objective, latency. Because it reads
the generator's output, its error gradient flows into the generator: the predictor shapes where the
generator samples (AG-Net §3.2).

Pre-training (`pretrain`, before the search loop, as AG-Net loads a generator pre-trained on random
architectures): random z, a batch of random valid keep-vectors (the search's own prior, repaired by
the search-space rule), loss BCE(G(z), x). The targets are unpaired with z, so the generator learns
the prior's per-group keep rates (for our keep-vectors, which have no sequential structure, that is
what the unpaired loss can teach); the search then starts from samples that look like valid random
architectures rather than from an untrained MLP's arbitrary logits. The surrogate is not pre-trained.

One training round (`fit`) on the evaluated set D with rank weights w:
- generator: batches drawn from D with probability ∝ w (toward the best); loss
  (1-α)·BCE(G(z), x) + α·(S(σ(G(z))) - y)², each sample's loss multiplied by its normalised weight;
- surrogate `mlp`: additionally regressed on all of D's real keep-vectors at every step (D is
  small), so it ranks unseen candidates by what was measured, not only by what the best ones scored;
- surrogate `gbdt`: AG-Net's XGBoost variant with scikit-learn's `HistGradientBoostingRegressor`
  (AG-Net's settings: squared error on standardised targets, depth 6, step 0.3, 500 rounds) fit on
  D's keep-vectors once per round; the generator then learns from the weighted reconstruction alone
  (a tree ensemble passes no gradient back, as in AG-Net's code), so α has no effect.

Targets are standardised per round (accuracies on digits sit within a few points of each other).
Everything is seeded through one `torch.Generator`; torch runs on one thread while these train.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

Surrogate = Literal["mlp", "gbdt"]


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


def _gbdt(seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    # AG-Net's xgb_params: reg:squarederror, max_depth 6, eta 0.3, min_child_weight 1, lambda 1 (XGBoost's
    # default), 500 rounds. No early stopping: D is a few dozen architectures.
    return HistGradientBoostingRegressor(max_iter=500, learning_rate=0.3, max_depth=6, min_samples_leaf=1,
                                         l2_regularization=1.0, early_stopping=False, random_state=seed)


class AGNet:
    """Generator + surrogate over keep-vectors of `size` groups; `outputs` = 1 (accuracy) or 2 (+latency)."""

    def __init__(self, size: int, *, outputs: int = 1, latent_dim: int = 32, hidden: int = 64, seed: int = 0,
                 lr: float = 1e-3, alpha: float = 0.9, batch_size: int = 16, surrogate: Surrogate = "mlp") -> None:
        if surrogate not in ("mlp", "gbdt"):
            raise ValueError(f"surrogate must be 'mlp' or 'gbdt', not '{surrogate}'")
        self.size, self.outputs, self.latent_dim = size, outputs, latent_dim
        self.alpha, self.batch_size, self.surrogate_kind, self.seed = alpha, batch_size, surrogate, seed
        self.random = torch.Generator().manual_seed(seed)
        with _one_thread():
            torch.manual_seed(seed)
            self.generator = _mlp([latent_dim, hidden, hidden, size])
            self.surrogate = _mlp([size, hidden, hidden, outputs])
        params = list(self.generator.parameters())
        if surrogate == "mlp":
            params += list(self.surrogate.parameters())
        self.optimizer = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))
        self.trees: list[Any] = []
        self._mean = np.zeros(outputs)
        self._std = np.ones(outputs)

    def _latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.rand(n, self.latent_dim, generator=generator or self.random) * 6.0 - 3.0

    def pretrain(self, keeps: np.ndarray, steps: int, *, batch_size: int = 32, lr: float = 1e-3) -> list[float]:
        """Pre-train the generator to reconstruct random valid keep-vectors (`keeps`, N×size): `steps`
        Adam steps (betas 0.5, 0.999, its own optimizer) on batches of random z against a uniformly
        drawn batch of `keeps`; returns each step's loss. The search's optimizer is untouched."""
        x = torch.as_tensor(np.asarray(keeps, dtype=np.float32))
        if x.ndim != 2 or x.shape[1] != self.size:
            raise ValueError(f"pre-training needs keep-vectors of {self.size} groups, got shape {tuple(x.shape)}")
        optimizer = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=(0.5, 0.999))
        losses: list[float] = []
        with _one_thread():
            self.generator.train()
            for _ in range(steps):
                pick = torch.randint(len(x), (batch_size,), generator=self.random)
                logits = self.generator(self._latent(batch_size))
                loss = nn.functional.binary_cross_entropy_with_logits(logits, x[pick])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
        return losses

    def reconstruction_loss(self, keeps: np.ndarray, samples: int = 2048, seed: int = 0) -> float:
        """The pre-training loss on `samples` (z, keep-vector) pairs drawn with their own `seed`: the same
        number before and after training when called with the same arguments (for measuring)."""
        x = torch.as_tensor(np.asarray(keeps, dtype=np.float32))
        own = torch.Generator().manual_seed(seed)
        with _one_thread(), torch.no_grad():
            self.generator.eval()
            pick = torch.randint(len(x), (samples,), generator=own)
            logits = self.generator(self._latent(samples, own))
            return float(nn.functional.binary_cross_entropy_with_logits(logits, x[pick]))

    def fit(self, keeps: np.ndarray, targets: np.ndarray, weights: np.ndarray, ticks: int, min_steps: int = 200) -> float:
        """One round of training on D (`keeps` N×size, `targets` N×outputs, rank `weights` N); returns
        the last batch's loss. `ticks` passes of N samples each, but at least `min_steps` batches (while
        D is small, a few passes are too few steps for the surrogate to learn anything)."""
        x = torch.as_tensor(np.asarray(keeps, dtype=np.float32))
        targets = np.asarray(targets, dtype=np.float64).reshape(len(x), self.outputs)
        self._mean, self._std = targets.mean(0), targets.std(0) + 1e-6
        standard = (targets - self._mean) / self._std
        y = torch.as_tensor(standard.astype(np.float32))
        w = torch.as_tensor(np.asarray(weights, dtype=np.float64) / np.mean(weights), dtype=torch.float32)
        steps = max(min_steps, ticks * len(x) // self.batch_size)
        mlp = self.surrogate_kind == "mlp"
        if not mlp:
            self.trees = [_gbdt(self.seed).fit(x.numpy(), standard[:, j]) for j in range(self.outputs)]
        loss = torch.zeros(())
        with _one_thread():
            self.generator.train()
            self.surrogate.train()
            for _ in range(steps):
                pick = torch.multinomial(w, self.batch_size, replacement=True, generator=self.random)
                logits = self.generator(self._latent(self.batch_size))
                recon = nn.functional.binary_cross_entropy_with_logits(logits, x[pick], reduction="none").mean(1)
                if mlp:
                    coupled = ((self.surrogate(torch.sigmoid(logits)) - y[pick]) ** 2).mean(1)
                    direct = ((self.surrogate(x) - y) ** 2).mean()
                    loss = (w[pick] * ((1 - self.alpha) * recon + self.alpha * coupled)).mean() + direct
                else:
                    loss = (w[pick] * recon).mean()
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
        keeps = np.asarray(keeps, dtype=np.float32)
        if self.surrogate_kind == "gbdt":
            if not self.trees:
                raise RuntimeError("predict before fit: the gradient-boosted surrogate has not been trained")
            out = np.stack([tree.predict(keeps) for tree in self.trees], axis=1).astype(np.float64)
        else:
            with _one_thread(), torch.no_grad():
                self.surrogate.eval()
                out = self.surrogate(torch.as_tensor(keeps)).numpy().astype(np.float64)
        return out * self._std + self._mean
