"""Loaders the Trainer can be exact and fast with (docs/seams.md, section 2).

Every built-in loader follows three rules:

1. ``len(loader)`` is the number of batches per epoch;
2. ``state_dict()`` / ``load_state_dict()`` hold the RNG state at the start of the current epoch and
   how many batches it has yielded, so a resumed run continues the interrupted epoch exactly;
3. ``loader.device`` is set when its batches already live on that device (no ``.to()`` per batch).

Under DDP (``world_size > 1``) every rank draws the same seeded permutation and takes the slice
``rank::world_size`` of each global batch: N processes see exactly the batches one process would.

The loaders, one per batch shape of docs/seams.md:

- :class:`TensorLoader`: ``(x, y)`` from tensors (classification, regression);
- :class:`DetectionLoader`: ``(images, targets)``, targets a list of dicts (:func:`collate_targets`);
- :class:`WindowLoader`: ``(x, y)`` random windows of a token stream, ``y`` shifted by one;
- :class:`SequencePairLoader`: padded source/target pairs with masks (seq2seq);
- :class:`MaskedLMLoader`: BERT's dynamically masked batches;
- :class:`GraphLoader`: one whole graph per epoch with a split's node mask.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch

__all__ = [
    "StatefulLoader",
    "TensorLoader",
    "IndexLoader",
    "DetectionLoader",
    "WindowLoader",
    "SequencePairLoader",
    "GraphLoader",
    "MaskedLMLoader",
    "collate_targets",
    "pad_sequences",
]


class StatefulLoader:
    """Base for seeded loaders: epoch-start RNG state + position, for exact (mid-epoch) resume.

    Subclasses implement ``_batches(order_generator) -> Iterator`` over one epoch, drawing all their
    randomness from ``self.generator``; this class tracks the position and the state.
    """

    def __init__(self, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if not (0 <= rank < world_size):
            raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}")
        self.generator = torch.Generator().manual_seed(int(seed))
        self.rank, self.world_size = int(rank), int(world_size)
        self.device: torch.device | None = None
        self._epoch_start: torch.Tensor | None = None  # generator state when this epoch began
        self._position = 0  # batches yielded in the current epoch
        self._skip = 0  # batches to skip on the next epoch (after load_state_dict)

    def _epoch(self) -> Iterator[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __iter__(self) -> Iterator[Any]:
        skip, self._skip = self._skip, 0
        self._epoch_start = self.generator.get_state()
        self._position = 0
        for i, batch in enumerate(self._epoch()):
            if i < skip:
                continue
            self._position = i + 1
            yield batch
        self._epoch_start, self._position = None, 0

    def state_dict(self) -> dict[str, Any]:
        """Where this loader is: enough to replay the rest of the current epoch exactly."""
        start = self._epoch_start if self._epoch_start is not None else self.generator.get_state()
        return {"generator": start.clone(), "position": self._position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self._skip = int(state.get("position", 0))


class TensorLoader(StatefulLoader):
    """Batches of ``(x, y)`` from tensors that already live on the device: no per-item Python.

    ``batch_size`` is the *global* batch: under DDP each rank takes its slice of it, so the learning
    rate and the results do not depend on the number of processes.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"inputs and targets differ in length: {len(x)} vs {len(y)}")
        _check_batch_size(batch_size, world_size)
        super().__init__(seed, rank, world_size)
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.device = x.device

    def __len__(self) -> int:
        n = len(self.x) / self.batch_size
        return math.floor(n) if self.drop_last else math.ceil(n)

    def _epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.x.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            if self.world_size > 1:
                idx = idx[self.rank :: self.world_size]
            yield self.x[idx], self.y[idx]

    @property
    def dataset_size(self) -> int:
        return len(self.x)


def _check_batch_size(batch_size: Any, world_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if batch_size < world_size:
        raise ValueError(
            f"batch_size {batch_size} is smaller than world_size {world_size}: "
            "every process needs at least one example of each global batch"
        )


class IndexLoader(StatefulLoader):
    """Base for loaders over ``n`` indexed examples: a seeded order, global batches of
    ``batch_size``, and rank ``r`` taking ``r::world_size`` of each (as :class:`TensorLoader`).

    Subclasses build a batch in ``_collate(whole, mine)``: ``whole`` holds the global batch's
    indices (for sizes and randomness every rank must agree on), ``mine`` this rank's slice.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        _check_batch_size(batch_size, world_size)
        super().__init__(seed, rank, world_size)
        self.n, self.batch_size = int(n), batch_size
        self.shuffle, self.drop_last = shuffle, drop_last

    def __len__(self) -> int:
        n = self.n / self.batch_size
        return math.floor(n) if self.drop_last else math.ceil(n)

    def _epoch(self) -> Iterator[Any]:
        n, g = self.n, self.generator
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        for i in range(len(self)):
            whole = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self._collate(whole, whole[self.rank :: self.world_size])

    def _collate(self, whole: torch.Tensor, mine: torch.Tensor) -> Any:  # pragma: no cover
        raise NotImplementedError

    @property
    def dataset_size(self) -> int:
        return self.n


# --- images with per-image targets (detection, instance masks) ---------------------------------


def collate_targets(
    images: Sequence[torch.Tensor],
    targets: Sequence[dict[str, torch.Tensor]],
    size: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """``(images, targets)`` for a detection model: images ``(C, H, W)`` stacked into
    ``(B, C, H, W)`` and targets kept a list of dicts, one per image.

    Images of different sizes are zero-padded at the bottom and right to ``size`` (default: the
    largest in the batch), so box coordinates stay valid; ``masks`` are padded the same way.
    """
    if len(images) != len(targets):
        raise ValueError(
            f"{len(images)} images but {len(targets)} targets: give one dict per image"
        )
    if not len(images):
        raise ValueError("an empty batch: give at least one image")
    channels = {im.shape[0] for im in images}
    if len(channels) != 1 or any(im.dim() != 3 for im in images):
        raise ValueError("images must all be (C, H, W) with the same C")
    h = max(im.shape[-2] for im in images)
    w = max(im.shape[-1] for im in images)
    if size is not None:
        if size[0] < h or size[1] < w:
            raise ValueError(f"size {tuple(size)} is smaller than the largest image ({h}, {w})")
        h, w = int(size[0]), int(size[1])
    if all(tuple(im.shape[-2:]) == (h, w) for im in images):
        return torch.stack(list(images)), [dict(t) for t in targets]
    out = images[0].new_zeros((len(images), channels.pop(), h, w))
    padded = []
    for k, (im, t) in enumerate(zip(images, targets, strict=True)):
        out[k, :, : im.shape[-2], : im.shape[-1]] = im
        t = dict(t)
        if "masks" in t:
            m = t["masks"]
            t["masks"] = torch.nn.functional.pad(m, (0, w - m.shape[-1], 0, h - m.shape[-2]))
        padded.append(t)
    return out, padded


class DetectionLoader(IndexLoader):
    """Batches ``(images, targets)``: images ``(B, C, H, W)``, targets a list of B dicts with
    ``boxes`` ``(k, 4)`` (pixel ``x1, y1, x2, y2``), ``labels`` ``(k,)`` and optional ``masks``
    ``(k, H, W)``. ``images`` is an ``(N, C, H, W)`` tensor or a list of ``(C, H, W)`` tensors of
    any sizes (padded per global batch by :func:`collate_targets`, identically on every rank).
    """

    def __init__(
        self,
        images: torch.Tensor | Sequence[torch.Tensor],
        targets: Sequence[dict[str, torch.Tensor]],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(images) != len(targets):
            raise ValueError(
                f"{len(images)} images but {len(targets)} targets: give one dict per image"
            )
        super().__init__(
            len(images), batch_size, shuffle, seed, drop_last, rank=rank, world_size=world_size
        )
        self.images, self.targets = images, list(targets)
        self.device = images.device if isinstance(images, torch.Tensor) else images[0].device
        self._sizes = torch.tensor([list(im.shape[-2:]) for im in images])

    def _collate(self, whole: torch.Tensor, mine: torch.Tensor) -> Any:
        targets = [self.targets[i] for i in mine.tolist()]
        if isinstance(self.images, torch.Tensor):
            return self.images[mine.to(self.device)], [dict(t) for t in targets]
        size = tuple(self._sizes[whole].amax(0).tolist())
        return collate_targets([self.images[i] for i in mine.tolist()], targets, size=size)


# --- token streams (character / word language models) -------------------------------------------


class WindowLoader(StatefulLoader):
    """Batches ``(x, y)`` of windows of one token stream, ``y`` = ``x`` shifted by one: long
    ``(B, T)``, as nanoGPT's ``get_batch``.

    ``random=True`` (training): each batch draws B offsets at random (seeded); an epoch is
    ``steps`` batches, by default ``(len(tokens) - 1) // (B * T)`` (about one pass over the tokens).
    ``random=False`` (evaluation): the fixed windows ``0, T, 2T, ...`` in order, the same every
    time; ``steps`` then keeps that many batches of evenly spaced windows.
    """

    def __init__(
        self,
        tokens: torch.Tensor,
        block_size: int,
        batch_size: int,
        *,
        random: bool = True,
        steps: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 1:
            raise ValueError("tokens must be a 1-D tensor of token ids")
        if tokens.is_floating_point():
            raise ValueError(f"token ids must be integers, got {tokens.dtype}")
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
        if steps is not None and (
            isinstance(steps, bool) or not isinstance(steps, int) or steps < 1
        ):
            raise ValueError(f"steps must be a positive integer or None, got {steps!r}")
        if len(tokens) < block_size + 1:
            raise ValueError(
                f"a stream of {len(tokens)} tokens is too short for windows of block_size "
                f"{block_size} (it needs at least {block_size + 1}); use a smaller block_size"
            )
        _check_batch_size(batch_size, world_size)
        super().__init__(seed, rank, world_size)
        self.tokens = tokens.long()
        self.block_size, self.batch_size, self.random = block_size, batch_size, random
        self.device = tokens.device
        if random:
            self.offsets = None
            self._len = steps or max(1, (len(tokens) - 1) // (batch_size * block_size))
        else:
            offsets = torch.arange(0, len(tokens) - block_size, block_size)
            if steps is not None and steps * batch_size < len(offsets):
                keep = torch.linspace(0, len(offsets) - 1, steps * batch_size).round().long()
                offsets = offsets[keep]
            self.offsets = offsets
            self._len = math.ceil(len(offsets) / batch_size)

    def __len__(self) -> int:
        return self._len

    def _epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        span = torch.arange(self.block_size, device=self.device)
        high = len(self.tokens) - self.block_size
        for i in range(self._len):
            if self.offsets is None:
                starts = torch.randint(high, (self.batch_size,), generator=self.generator)
            else:
                starts = self.offsets[i * self.batch_size : (i + 1) * self.batch_size]
            at = starts[self.rank :: self.world_size].to(self.device)[:, None] + span
            yield self.tokens[at], self.tokens[at + 1]


# --- padded sequences (seq2seq, masked LM) ----------------------------------------------------------


def pad_sequences(
    sequences: Sequence[Sequence[int]] | Sequence[torch.Tensor], pad_id: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, lengths)``: sequences of token ids right-padded with ``pad_id`` into a long
    ``(N, L)`` tensor, and their lengths ``(N,)``."""
    rows = [torch.as_tensor(s) if len(s) else torch.zeros(0, dtype=torch.long) for s in sequences]
    for i, r in enumerate(rows):
        if r.dim() != 1 or r.is_floating_point():
            raise ValueError(f"sequence {i} must be a flat list of integer token ids")
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    ids = torch.full((len(rows), int(lengths.max()) if len(rows) else 0), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
    return ids, lengths


class SequencePairLoader(IndexLoader):
    """Dict batches of padded source/target pairs (seq2seq, teacher forcing):

    ``src`` long ``(B, S)``, ``src_mask`` bool ``(B, S)`` (True = real token), ``tgt_in`` long
    ``(B, T)`` = BOS + target, ``tgt_out`` long ``(B, T)`` = target + EOS, ``tgt_mask`` bool
    ``(B, T)``. Each batch is padded with ``pad_id`` to its longest pair (the global batch's,
    so every rank agrees). The padded tensors are moved to ``device`` once.
    """

    def __init__(
        self,
        src: Sequence[Sequence[int]],
        tgt: Sequence[Sequence[int]],
        batch_size: int,
        *,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        device: Any = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(src) != len(tgt):
            raise ValueError(f"{len(src)} source sequences but {len(tgt)} targets: give pairs")
        super().__init__(
            len(src), batch_size, shuffle, seed, drop_last, rank=rank, world_size=world_size
        )
        src_ids, src_len = pad_sequences(src, pad_id)
        if len(src_len) and int(src_len.min()) == 0:
            empty = int((src_len == 0).nonzero()[0])
            raise ValueError(f"source sequence {empty} is empty: every source needs a token")
        tgt_ids, tgt_len = pad_sequences(tgt, pad_id)
        n, t = tgt_ids.shape
        tgt_in = torch.full((n, t + 1), pad_id, dtype=torch.long)
        tgt_in[:, 0], tgt_in[:, 1:] = bos_id, tgt_ids
        tgt_out = torch.full((n, t + 1), pad_id, dtype=torch.long)
        tgt_out[:, :t] = tgt_ids
        tgt_out[torch.arange(n), tgt_len] = eos_id
        self._src_len, self._tgt_len = src_len, tgt_len + 1  # on the CPU: batch widths, no sync
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        to = lambda a: a.to(self.device)  # noqa: E731
        self.src, self.src_len = to(src_ids), to(src_len)
        self.tgt_in, self.tgt_out, self.tgt_len = to(tgt_in), to(tgt_out), to(tgt_len + 1)

    def _collate(self, whole: torch.Tensor, mine: torch.Tensor) -> dict[str, torch.Tensor]:
        s, t = int(self._src_len[whole].max()), int(self._tgt_len[whole].max())
        i = mine.to(self.device)
        return {
            "src": self.src[i, :s],
            "src_mask": torch.arange(s, device=self.device) < self.src_len[i, None],
            "tgt_in": self.tgt_in[i, :t],
            "tgt_out": self.tgt_out[i, :t],
            "tgt_mask": torch.arange(t, device=self.device) < self.tgt_len[i, None],
        }


class MaskedLMLoader(IndexLoader):
    """Masked-language-model batches (BERT): dict ``input_ids`` long ``(B, T)``,
    ``attention_mask`` bool ``(B, T)``, ``labels`` long ``(B, T)`` with ``-100`` where nothing is
    predicted.

    Masking is dynamic (new for every batch drawn) and seeded: each real, non-special token is
    chosen with probability ``mask_prob`` (at least one per sequence, so no batch has nothing to
    predict); a chosen token becomes ``mask_id`` 80% of the time, a random id 10%, itself 10%.
    ``fixed=True`` (evaluation) draws the same masks every epoch. The randomness is drawn for the
    whole global batch, so N ranks see exactly the masks one process would.
    """

    def __init__(
        self,
        sequences: Sequence[Sequence[int]],
        batch_size: int,
        *,
        vocab_size: int,
        mask_id: int,
        pad_id: int = 0,
        special_ids: Sequence[int] = (),
        mask_prob: float = 0.15,
        shuffle: bool = True,
        fixed: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        device: Any = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0.0 < float(mask_prob) < 1.0:
            raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob!r}")
        super().__init__(
            len(sequences), batch_size, shuffle, seed, drop_last, rank=rank, world_size=world_size
        )
        ids, lengths = pad_sequences(sequences, pad_id)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
            raise ValueError(
                f"token ids must lie in [0, vocab_size={vocab_size}); found "
                f"{int(ids.min())}..{int(ids.max())}"
            )
        self.vocab_size, self.mask_id, self.mask_prob = (
            int(vocab_size),
            int(mask_id),
            float(mask_prob),
        )
        self.fixed, self.seed = fixed, int(seed)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._lengths = lengths  # on the CPU: batch widths without a device sync
        self.ids, self.lengths = ids.to(self.device), lengths.to(self.device)
        special = sorted({int(pad_id), int(mask_id), *(int(s) for s in special_ids)})
        self.special = torch.tensor(special, dtype=torch.long, device=self.device)

    def _epoch(self) -> Iterator[dict[str, torch.Tensor]]:
        if self.fixed:
            self.generator.manual_seed(self.seed)
        yield from super()._epoch()

    def _collate(self, whole: torch.Tensor, mine: torch.Tensor) -> dict[str, torch.Tensor]:
        n, t = len(whole), int(self._lengths[whole].max())
        g = self.generator
        draws = (
            torch.rand(n, t, generator=g),  # is this position chosen?
            torch.rand(n, t, generator=g),  # [MASK], random or unchanged
            torch.randint(self.vocab_size, (n, t), generator=g),  # the random replacement
        )
        u, r, random_ids = (d[self.rank :: self.world_size].to(self.device) for d in draws)
        i = mine.to(self.device)
        ids = self.ids[i, :t]
        attention = torch.arange(t, device=self.device) < self.lengths[i, None]
        maskable = attention & ~torch.isin(ids, self.special)
        chosen = (u < self.mask_prob) & maskable
        # a sequence with nothing chosen gets its most likely position chosen instead
        fallback = torch.where(maskable, u, 2.0).argmin(1, keepdim=True)
        none = ~chosen.any(1, keepdim=True) & maskable.any(1, keepdim=True)
        chosen |= none & (torch.arange(t, device=self.device) == fallback)
        inputs = torch.where(chosen & (r < 0.8), self.mask_id, ids)
        inputs = torch.where(chosen & (r >= 0.8) & (r < 0.9), random_ids, inputs)
        labels = torch.where(chosen, ids, -100)
        return {"input_ids": inputs, "attention_mask": attention, "labels": labels}


# --- one graph, full batch (GCN) ---------------------------------------------------------------------


class GraphLoader(StatefulLoader):
    """One graph as one full batch per epoch: dict ``x`` float ``(N, F)``, ``edge_index`` long
    ``(2, E)``, ``y`` long ``(N,)``, ``mask`` bool ``(N,)`` = the nodes this split scores.

    Under DDP rank ``r`` scores the nodes ``r::world_size`` of the mask (every rank sees the whole
    graph), so the ranks' masks are disjoint and together give the split's mask.
    """

    def __init__(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        y: torch.Tensor,
        mask: torch.Tensor,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        n = len(x)
        if x.dim() != 2:
            raise ValueError(f"x must be node features (N, F), got shape {tuple(x.shape)}")
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"edge_index must be (2, E), got shape {tuple(edge_index.shape)}")
        if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= n):
            raise ValueError(f"edge_index refers to nodes outside 0..{n - 1}")
        if len(y) != n or mask.shape != (n,) or mask.dtype != torch.bool:
            raise ValueError(f"y and mask must have one entry per node ({n}); mask must be bool")
        super().__init__(0, rank, world_size)
        nodes = mask.nonzero().flatten()[rank::world_size]
        mine = torch.zeros_like(mask)
        mine[nodes] = True
        self.batch = {"x": x, "edge_index": edge_index.long(), "y": y, "mask": mine}
        self.device = x.device

    def __len__(self) -> int:
        return 1

    def _epoch(self) -> Iterator[dict[str, torch.Tensor]]:
        yield dict(self.batch)  # a new dict each time: a step may add keys to it
