"""LSTM encoder and decoder for sentences: the text VAE of Bowman et al. (2016) and He et al. (2019).

Conventions (those of :mod:`vaeas.data` for sequence datasets)

* a batch ``x`` is ``(B, T)`` int64 token ids, each row ``<bos> w_1 .. w_L <eos>`` right-padded with
  ``<pad>``; the ids of the specials are ``PAD = 0``, ``BOS = 1``, ``EOS = 2``, ``UNK = 3`` and
  ``vocab_size`` counts them;
* the decoder is teacher-forced: it reads ``x[:, :-1]`` and returns logits ``(B, T - 1, V)`` for the
  targets ``x[:, 1:]``; ``log p(x|z)`` sums the log-probabilities of the targets that are not
  ``<pad>``, i.e. of the ``L`` words and the ``<eos>`` (``<bos>`` is given, never scored).

The sizes default to He et al.'s synthetic-data model (2-D latent, 50 hidden units, embeddings of
50, dropout 0.5 on the decoder's input embeddings and on its LSTM outputs). This module knows
nothing of :class:`vaeas.models.VAE`: ``models`` builds the VAE around these modules and mixes in
:class:`SequenceLikelihood`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .distributions import categorical_log_likelihood

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")


def target_mask(x: Tensor) -> Tensor:
    """Which decoder targets ``x[:, 1:]`` are scored (not ``<pad>``): ``(B, T) -> (B, T - 1)`` bool."""
    return x[:, 1:] != PAD


def token_log_likelihood(logits: Tensor, x: Tensor) -> Tensor:
    """``log p(x|z) = sum_t log softmax(logits_t)[x_{t+1}]`` over the scored targets: ``(B,)``, nats.

    ``logits (B, T - 1, V)`` from :meth:`LSTMDecoder.forward`; padded positions add nothing and get
    no gradient.
    """
    return categorical_log_likelihood(logits, x[:, 1:], target_mask(x))


def count_tokens(x: Tensor) -> Tensor:
    """Tokens scored per sentence (its words and ``<eos>``): ``(B, T) -> (B,)`` int64."""
    return target_mask(x).sum(-1)


class SequenceLikelihood:
    """Mixin for a VAE over token sequences: categorical ``log_likelihood`` and ``count_tokens``
    (the per-sentence token count that :mod:`vaeas.metrics` turns into perplexity)."""

    @staticmethod
    def log_likelihood(logits: Tensor, x: Tensor) -> Tensor:
        """log p(x|z) of each sentence: ``(B, T - 1, V), (B, T) -> (B,)``, nats."""
        return token_log_likelihood(logits, x)

    @staticmethod
    def count_tokens(x: Tensor) -> Tensor:
        """Tokens scored per sentence (words + ``<eos>``): ``(B, T) -> (B,)``."""
        return count_tokens(x)


class LSTMEncoder(nn.Module):
    """``x (B, T) -> (mu, logvar)``, each ``(B, D)``: embedding, one-layer LSTM, and a linear map of
    the LSTM output at each sentence's last valid token (its ``<eos>``).

    The state is gathered at position ``length - 1``; an LSTM is causal, so the padding after
    ``<eos>`` (however long) does not change the code. No dropout (He et al.'s encoder has none).
    """

    def __init__(self, vocab_size: int, latent_dim: int, embed_dim: int = 50, hidden: int = 50):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 2 * latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out, _ = self.lstm(self.embed(x))  # (B, T, H)
        last = ((x != PAD).sum(1) - 1).clamp(min=0)  # (B,)
        h = out.gather(1, last[:, None, None].expand(-1, 1, out.shape[-1])).squeeze(1)
        mu, logvar = self.head(h).chunk(2, dim=-1)
        return mu, logvar


class LSTMDecoder(nn.Module):
    """Autoregressive decoder ``p(x|z) = prod_t p(x_{t+1} | x_<=t, z)`` (He et al. 2019).

    ``z`` enters twice: in the initial state, ``c_0 = W z`` and ``h_0 = tanh(c_0)`` (He et al.'s
    ``trans_linear``), and concatenated to every input embedding. ``dropout`` is applied to the
    input embeddings and to the LSTM outputs; ``word_dropout`` (Bowman et al. 2016) replaces, while
    training, each input token other than ``<bos>``/``<pad>`` by ``<unk>`` with that probability,
    which weakens the decoder's access to the past and so pushes information into ``z``.
    """

    autoregressive = True

    def __init__(self, vocab_size: int, latent_dim: int, max_len: int, embed_dim: int = 50,
                 hidden: int = 50, word_dropout: float = 0.0, dropout: float = 0.0):
        super().__init__()
        if not (0.0 <= word_dropout < 1.0 and 0.0 <= dropout < 1.0):
            raise ValueError("word_dropout and dropout must be in [0, 1)")
        self.vocab_size, self.max_len, self.word_dropout = vocab_size, max_len, float(word_dropout)
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.hidden = hidden
        self.init_state = nn.Linear(latent_dim, hidden, bias=False) if latent_dim > 0 else None
        self.lstm = nn.LSTM(embed_dim + latent_dim, hidden, batch_first=True)
        self.drop_in, self.drop_out = nn.Dropout(dropout), nn.Dropout(dropout)
        self.out = nn.Linear(hidden, vocab_size)

    def initial_state(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(h_0, c_0)``, each ``(1, B, H)``: ``c_0 = W z``, ``h_0 = tanh(c_0)`` (zeros when ``D = 0``)."""
        c0 = (self.init_state(z) if self.init_state is not None else z.new_zeros(len(z), self.hidden))[None]
        return torch.tanh(c0), c0

    def _step_logits(self, z: Tensor, tokens: Tensor, state: tuple[Tensor, Tensor]
                     ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Logits ``(B, S, V)`` for inputs ``tokens (B, S)`` from ``state``, and the new state."""
        emb = self.drop_in(self.embed(tokens))
        emb = torch.cat([emb, z[:, None, :].expand(-1, tokens.shape[1], -1)], dim=-1)
        out, state = self.lstm(emb, state)
        return self.out(self.drop_out(out)), state

    def forward(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        """Teacher-forced logits ``(B, T - 1, V)`` predicting ``x[:, 1:]`` from ``x[:, :-1]``."""
        if x is None:
            raise ValueError("an autoregressive decoder needs x to evaluate p(x|z); use sample()")
        inp = x[:, :-1]
        if self.training and self.word_dropout > 0:
            drop = torch.rand(inp.shape, device=inp.device) < self.word_dropout
            inp = inp.masked_fill(drop & (inp != PAD) & (inp != BOS), UNK)
        return self._step_logits(z, inp, self.initial_state(z))[0]

    @torch.no_grad()
    def sample(self, z: Tensor, generator: torch.Generator | None = None, max_len: int | None = None,
               greedy: bool = False) -> Tensor:
        """Sentences from ``p(x|z)``: ``z (B, D) -> tokens (B, max_len + 2)`` laid out like the data.

        Each row is ``<bos> w_1 .. w_L <eos>`` then ``<pad>``: tokens are drawn (or, with ``greedy``,
        chosen by argmax) one at a time, never ``<pad>``/``<bos>``; a sentence stops at its first
        ``<eos>``, and one still open after ``max_len`` words gets ``<eos>`` as its last token.
        """
        max_len = self.max_len if max_len is None else max_len
        b = z.shape[0]
        tokens = torch.full((b, max_len + 2), PAD, dtype=torch.long, device=z.device)
        tokens[:, 0] = BOS
        done = torch.zeros(b, dtype=torch.bool, device=z.device)
        state = self.initial_state(z)
        for t in range(1, max_len + 1):
            logits, state = self._step_logits(z, tokens[:, t - 1 : t], state)
            logits = logits[:, 0].float()
            logits[:, [PAD, BOS]] = float("-inf")
            nxt = (logits.argmax(-1) if greedy else
                   torch.multinomial(F.softmax(logits, -1), 1, generator=generator).squeeze(1))
            tokens[:, t] = torch.where(done, PAD, nxt)
            done |= nxt == EOS
            if bool(done.all()):
                return tokens
        tokens[~done, max_len + 1] = EOS
        return tokens


def build_lstm(vocab_size: int, max_len: int, latent_dim: int, embed_dim: int = 50,
               lstm_hidden: int = 50, word_dropout: float = 0.0, dropout: float = 0.0
               ) -> tuple[LSTMEncoder | None, LSTMDecoder]:
    """The encoder and decoder of an LSTM VAE over ``vocab_size`` tokens (specials included) and
    sentences of at most ``max_len`` words; no encoder (None) when ``latent_dim = 0``, the language
    model without a code."""
    if vocab_size <= len(SPECIALS) or max_len < 1:
        raise ValueError("an LSTM VAE needs vocab_size > 4 (the specials) and max_len >= 1")
    if embed_dim < 1 or lstm_hidden < 1:
        raise ValueError("embed_dim and lstm_hidden must be >= 1")
    enc = LSTMEncoder(vocab_size, latent_dim, embed_dim, lstm_hidden) if latent_dim > 0 else None
    dec = LSTMDecoder(vocab_size, latent_dim, max_len, embed_dim, lstm_hidden, word_dropout, dropout)
    return enc, dec
