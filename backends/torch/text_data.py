"""A next-token text task made by code (no download): short "documents" from a few topic Markov chains.

`TopicMarkov` is a small probabilistic language. It has `topics` marker tokens (ids 0..topics-1) and
`vocab - topics` word tokens. Each topic owns a sparse Markov chain over the words: from every word
(and from its own marker, which serves as the start state) it moves to one of `branching` successor
words, with skewed probabilities. A document is its topic's marker followed by a walk of that
topic's chain, so predicting the next token needs two things a small decoder has to learn:

- the current token (a bigram: the embedding and the MLPs can do this), and
- the topic, which only the first token states (attention has to fetch it; later tokens narrow it
  down too, since the chains rarely share a transition).

A bigram model that ignores the topic sits near ln(topics · branching) nats; knowing the topic it can
reach the language's own entropy, which `best_loss` computes exactly from the chains on the very
tokens evaluated (the floor no model can beat on them), and `best_accuracy` the share of next tokens
the chains' own most likely successor gets right.

Invariants: the language is a function of (vocab, topics, branching, seed) only, and `sample(n,
seq_len, seed)` of those and its own arguments, so a train and a test set drawn with different
seeds come from one language. Markers appear only at position 0.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from asgnas_ir.errors import AsgnasError

__all__ = ["TopicMarkov", "next_token_accuracy", "next_token_loss"]


class TopicMarkov:
    """A language of `topics` sparse Markov chains over `vocab - topics` words (module docstring).

    Args:
        vocab: tokens in all, markers included.
        topics: marker tokens, one chain each (ids 0..topics-1).
        branching: successors per state; the most likely one gets about half the mass.
        seed: draws the chains.

    Raises:
        AsgnasError: fewer words than `branching`, or a size below 1.
    """

    def __init__(self, vocab: int = 48, topics: int = 4, branching: int = 3, seed: int = 0) -> None:
        words = vocab - topics
        if topics < 1 or branching < 1 or words < branching:
            raise AsgnasError(
                f"TopicMarkov: vocab={vocab}, topics={topics}, branching={branching} leaves {words} words for "
                f"{branching} successors per state; give vocab ≥ topics + branching and sizes ≥ 1"
            )
        self.vocab, self.topics, self.branching, self.seed = vocab, topics, branching, seed
        rng = np.random.default_rng(seed)
        # transitions[t, s] is the next-token distribution of topic t in state s (a marker or a word);
        # rows of the other topics' markers stay zero: a document never visits them
        self.transitions = np.zeros((topics, vocab, vocab))
        skew = 0.5 ** np.arange(branching)  # 1, 1/2, 1/4...: a clear favourite, still uncertain
        for t in range(topics):
            for state in [t, *range(topics, vocab)]:
                successors = topics + rng.choice(words, size=branching, replace=False)
                self.transitions[t, state, successors] = rng.permutation(skew) / skew.sum()

    def sample(self, n: int, seq_len: int, seed: int = 0) -> torch.Tensor:
        """`n` documents of `seq_len` tokens (int64, [n, seq_len]): a marker, then its chain's walk."""
        if n < 1 or seq_len < 2:
            raise AsgnasError(f"TopicMarkov.sample: need n ≥ 1 and seq_len ≥ 2 (a marker and a word), got n={n}, seq_len={seq_len}")
        rng = np.random.default_rng([self.seed, seed])
        tokens = np.empty((n, seq_len), np.int64)
        tokens[:, 0] = topic = rng.integers(0, self.topics, size=n)
        cumulative = np.cumsum(self.transitions, axis=-1)
        for i in range(1, seq_len):
            rows = cumulative[topic, tokens[:, i - 1]]  # [n, vocab]
            draws = rng.random((n, 1))
            # the first index whose cumulative mass exceeds the draw (min(): guards rounding at 1.0)
            tokens[:, i] = np.minimum((rows <= draws).sum(axis=1), self.vocab - 1)
        return torch.from_numpy(tokens)

    def next_probs(self, tokens: torch.Tensor) -> np.ndarray:
        """The language's next-token distribution after each position of `tokens` but the last
        ([n, seq_len - 1, vocab]): the best possible prediction, given the topic marker at position 0."""
        t = tokens.cpu().numpy()
        return self.transitions[t[:, :1], t[:, :-1]]

    def best_loss(self, tokens: torch.Tensor) -> float:
        """The chains' own mean cross-entropy (nats) on the next tokens of `tokens`: the floor a model
        can only reach by knowing the language exactly."""
        probs = self.next_probs(tokens)
        picked = np.take_along_axis(probs, tokens[:, 1:, None].cpu().numpy(), axis=-1)
        return float(-np.log(picked).mean())

    def best_accuracy(self, tokens: torch.Tensor) -> float:
        """The share of next tokens in `tokens` that the chains' most likely successor predicts."""
        guess = self.next_probs(tokens).argmax(-1)
        return float((guess == tokens[:, 1:].cpu().numpy()).mean())


def next_token_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of `logits` [n, s, vocab] at positions 0..s-2 against tokens 1..s-1."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))


def next_token_accuracy(logits: torch.Tensor, tokens: torch.Tensor) -> float:
    """Share of positions 0..s-2 whose argmax is the next token."""
    return float((logits[:, :-1].argmax(-1) == tokens[:, 1:]).float().mean())
