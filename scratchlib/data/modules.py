"""Generic DataModules for the batch shapes beyond classification (docs/seams.md, section 2).

Each holds one dataset in three splits and hands out the loaders of :mod:`.loaders` (stateful,
seeded, DDP-sharded; tensors moved to the device once):

| module              | batch                                                                  |
|---------------------|------------------------------------------------------------------------|
| ``DetectionData``   | ``(images, targets)``: targets a list of dicts ``boxes``, ``labels``, ``masks`` |
| ``TokenStreamData`` | ``(x, y)`` long ``(B, T)`` random windows, ``y`` = ``x`` shifted by one |
| ``SequencePairData``| dict ``src``, ``src_mask``, ``tgt_in``, ``tgt_out``, ``tgt_mask``        |
| ``GraphData``       | dict ``x``, ``edge_index``, ``y``, ``mask`` (one full-batch graph)      |
| ``MaskedLMData``    | dict ``input_ids``, ``attention_mask``, ``labels`` (-100: not predicted) |

Splits are carved seeded from the whole set (``val_fraction`` / ``n_val``, ``test_fraction`` /
``n_test``) unless given: ``splits={"train": idx, "val": idx, "test": idx}`` (or the graph's
masks; a token stream's contiguous ranges). ``source`` is recorded in ``facts()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .core import DataModule, carve, to_tensor
from .loaders import (
    DetectionLoader,
    GraphLoader,
    MaskedLMLoader,
    SequencePairLoader,
    WindowLoader,
)

__all__ = ["DetectionData", "TokenStreamData", "SequencePairData", "GraphData", "MaskedLMData"]

SPLITS = ("train", "val", "test")


def _to(t: torch.Tensor, device: Any) -> torch.Tensor:
    return t if device is None else t.to(device)


class _Split(DataModule):
    """Shared by the modules over N indexed examples: the three index arrays and their facts."""

    def __init__(
        self,
        n: int,
        *,
        labels: np.ndarray | None,
        splits: Mapping[str, Any] | None,
        val_fraction: float,
        test_fraction: float,
        n_val: int | None,
        n_test: int | None,
        seed: int,
        batch_size: int,
        name: str,
        source: str,
    ) -> None:
        self.name, self.source, self.batch_size = name, source, batch_size
        if splits is None:
            splits = carve(
                n if labels is None else labels, val_fraction, test_fraction, n_val, n_test, seed
            )
        unknown = set(splits) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown split names {sorted(unknown)}; use {list(SPLITS)}")
        self.splits = {k: np.asarray(splits.get(k, ()), dtype=np.int64).reshape(-1) for k in SPLITS}
        every = np.concatenate(list(self.splits.values()))
        if every.size and (every.min() < 0 or every.max() >= n):
            raise ValueError(f"split indices must lie in 0..{n - 1}")
        if len(np.unique(every)) != len(every):
            raise ValueError("the splits overlap: an example may be in one split only")
        if not len(self.splits["train"]):
            raise ValueError(f"{name}: the train split is empty")

    def _split(self, split: str) -> np.ndarray | None:
        idx = self.splits[split]
        return idx if len(idx) else None

    def train_loader(
        self,
        batch_size: int | None = None,
        *,
        device: Any = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> Any:
        return self._loader(
            self.splits["train"],
            batch_size or self.batch_size,
            True,
            device,
            seed,
            rank,
            world_size,
        )

    def val_loader(
        self,
        batch_size: int | None = None,
        *,
        device: Any = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> Any:
        idx = self._split("val")
        return (
            None
            if idx is None
            else self._loader(
                idx, batch_size or self.batch_size, False, device, 0, rank, world_size
            )
        )

    def test_loader(
        self,
        batch_size: int | None = None,
        *,
        device: Any = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> Any:
        idx = self._split("test")
        return (
            None
            if idx is None
            else self._loader(
                idx, batch_size or self.batch_size, False, device, 0, rank, world_size
            )
        )

    def _loader(self, idx, batch_size, shuffle, device, seed, rank, world_size):  # pragma: no cover
        raise NotImplementedError

    def facts(self) -> dict[str, Any]:
        return {**super().facts(), **{f"n_{k}": len(v) for k, v in self.splits.items()}}

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        return f"{type(self).__name__}({self.name!r}, source={self.source!r}, {sizes})"


# --- images with per-image targets ----------------------------------------------------------------


def _target(t: Any, i: int, hw: tuple[int, int]) -> dict[str, Any]:
    if not isinstance(t, Mapping) or "boxes" not in t or "labels" not in t:
        raise ValueError(f"target {i} must be a dict with 'boxes' (k, 4) and 'labels' (k,)")
    out = dict(t)
    boxes = torch.as_tensor(t["boxes"], dtype=torch.float32)
    if boxes.numel() == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(
            f"target {i}: boxes must be (k, 4) x1, y1, x2, y2; got {tuple(boxes.shape)}"
        )
    if ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any():
        raise ValueError(f"target {i}: boxes must be x1, y1, x2, y2 pixels with x1 <= x2, y1 <= y2")
    labels = torch.as_tensor(t["labels"])
    if labels.is_floating_point() or labels.shape != (len(boxes),):
        raise ValueError(f"target {i}: labels must be {len(boxes)} integer classes, one per box")
    out["boxes"], out["labels"] = boxes, labels.long()
    if "masks" in t:
        masks = torch.as_tensor(t["masks"])
        if masks.shape != (len(boxes), *hw):
            raise ValueError(
                f"target {i}: masks must be (k, H, W) = {(len(boxes), *hw)}, got {tuple(masks.shape)}"
            )
        out["masks"] = masks.to(torch.uint8)
    return out


class DetectionData(_Split):
    """Images with per-image targets (detection, instance masks).

    images: float ``(N, C, H, W)`` (tensor or array), or a list of ``(C, H, W)`` of any sizes.
    targets: one dict per image: ``boxes`` ``(k, 4)`` pixel ``x1, y1, x2, y2``, ``labels`` ``(k,)``,
        optional ``masks`` uint8 ``(k, H, W)``; other keys are kept as they are.
    classes: the class names (``labels`` index them).
    """

    def __init__(
        self,
        images: Any,
        targets: Sequence[Mapping[str, Any]],
        *,
        classes: Sequence[str] = (),
        splits: Mapping[str, Any] | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        n_val: int | None = None,
        n_test: int | None = None,
        seed: int = 0,
        batch_size: int = 8,
        name: str = "detection",
        source: str = "synthetic",
    ) -> None:
        if isinstance(images, (torch.Tensor, np.ndarray)):
            self.images = to_tensor(images)
            if self.images.dim() != 4:
                raise ValueError(
                    f"images must be (N, C, H, W), got shape {tuple(self.images.shape)}"
                )
        else:
            self.images = [to_tensor(im) for im in images]
            if any(im.dim() != 3 for im in self.images):
                raise ValueError("a list of images must hold (C, H, W) tensors")
        if len(self.images) != len(targets):
            raise ValueError(
                f"{len(self.images)} images but {len(targets)} targets: one dict per image"
            )
        if len(self.images) and not self.images[0].is_floating_point():
            raise ValueError("images must be float (e.g. pixel values scaled to [0, 1])")
        self.targets = [
            _target(t, i, tuple(im.shape[-2:]))
            for i, (im, t) in enumerate(zip(self.images, targets, strict=True))
        ]
        self.classes = list(classes)
        super().__init__(
            len(self.images),
            labels=None,
            splits=splits,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            n_val=n_val,
            n_test=n_test,
            seed=seed,
            batch_size=batch_size,
            name=name,
            source=source,
        )

    def _loader(self, idx, batch_size, shuffle, device, seed, rank, world_size):
        if isinstance(self.images, torch.Tensor):
            images = _to(self.images[torch.as_tensor(idx)], device)
        else:
            images = [_to(self.images[i], device) for i in idx]
        targets = [
            {
                k: _to(v, device) if isinstance(v, torch.Tensor) else v
                for k, v in self.targets[i].items()
            }
            for i in idx
        ]
        return DetectionLoader(
            images, targets, batch_size, shuffle, seed, rank=rank, world_size=world_size
        )

    @property
    def num_classes(self) -> int:
        if self.classes:
            return len(self.classes)
        return max(
            (int(t["labels"].max()) + 1 for t in self.targets if len(t["labels"])), default=0
        )

    def facts(self) -> dict[str, Any]:
        sizes = {tuple(im.shape) for im in self.images}
        return {
            **super().facts(),
            "image_shape": list(sizes.pop()) if len(sizes) == 1 else "varied",
            "num_classes": self.num_classes,
            "n_boxes": sum(len(t["boxes"]) for t in self.targets),
            "masks": all("masks" in t for t in self.targets),
        }


# --- token streams ----------------------------------------------------------------------------------


class TokenStreamData(DataModule):
    """One stream of token ids, cut into contiguous train / val / test ranges (in that order),
    sampled as random windows of ``block_size`` for training and fixed windows for evaluation.

    steps_per_epoch: training batches per epoch (default: about one pass over the train tokens).
    eval_steps: cap on evaluation batches (evenly spaced fixed windows; default: all of them).
    """

    def __init__(
        self,
        tokens: Any,
        *,
        block_size: int,
        vocab_size: int | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        n_val: int | None = None,
        n_test: int | None = None,
        batch_size: int = 32,
        steps_per_epoch: int | None = None,
        eval_steps: int | None = None,
        name: str = "tokens",
        source: str = "synthetic",
    ) -> None:
        from .core import split_size

        tokens = to_tensor(np.asarray(tokens) if isinstance(tokens, (list, tuple)) else tokens)
        if tokens.dim() != 1 or tokens.is_floating_point():
            raise ValueError("tokens must be a 1-D sequence of integer token ids")
        n = len(tokens)
        n_te = split_size(n, test_fraction, n_test, "test")
        n_va = split_size(n - n_te, val_fraction, n_val, "val")
        cut = (n - n_te - n_va, n - n_te)
        self.ranges = {"train": (0, cut[0]), "val": (cut[0], cut[1]), "test": (cut[1], n)}
        for split, (a, b) in self.ranges.items():
            if (b > a or split == "train") and b - a <= block_size:  # an empty val/test is fine
                raise ValueError(
                    f"the {split} range has {b - a} tokens, too few for windows of block_size "
                    f"{block_size}; use a smaller block_size or a smaller {split} split"
                )
        self.tokens, self.block_size = tokens, block_size
        self.vocab_size = int(vocab_size) if vocab_size is not None else int(tokens.max()) + 1
        self.batch_size, self.steps_per_epoch, self.eval_steps = (
            batch_size,
            steps_per_epoch,
            eval_steps,
        )
        self.name, self.source = name, source

    def split(self, name: str) -> torch.Tensor:
        """The token ids of one split (a view of the stream)."""
        a, b = self.ranges[name]
        return self.tokens[a:b]

    def train_loader(
        self,
        batch_size: int | None = None,
        *,
        device: Any = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> Any:
        return WindowLoader(
            _to(self.split("train"), device),
            self.block_size,
            batch_size or self.batch_size,
            random=True,
            steps=self.steps_per_epoch,
            seed=seed,
            rank=rank,
            world_size=world_size,
        )

    def _eval(self, split, batch_size, device, rank, world_size):
        tokens = self.split(split)
        if not len(tokens):
            return None
        return WindowLoader(
            _to(tokens, device),
            self.block_size,
            batch_size or self.batch_size,
            random=False,
            steps=self.eval_steps,
            rank=rank,
            world_size=world_size,
        )

    def val_loader(
        self,
        batch_size: int | None = None,
        *,
        device: Any = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> Any:
        return self._eval("val", batch_size, device, rank, world_size)

    def test_loader(
        self,
        batch_size: int | None = None,
        *,
        device: Any = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> Any:
        return self._eval("test", batch_size, device, rank, world_size)

    def facts(self) -> dict[str, Any]:
        return {
            **super().facts(),
            **{f"n_{k}": b - a for k, (a, b) in self.ranges.items()},  # tokens
            "block_size": self.block_size,
            "vocab_size": self.vocab_size,
        }

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={b - a}" for k, (a, b) in self.ranges.items())
        return f"TokenStreamData({self.name!r}, source={self.source!r}, tokens: {sizes})"


# --- padded sequence pairs ----------------------------------------------------------------------------


class SequencePairData(_Split):
    """Pairs of source / target id sequences (seq2seq), batched padded with masks.

    ``tgt_in`` is BOS + target and ``tgt_out`` target + EOS (teacher forcing); ``pad_id``,
    ``bos_id`` and ``eos_id`` are the special ids of the target vocabulary (``pad_id`` also pads
    the source).
    """

    def __init__(
        self,
        src: Sequence[Sequence[int]],
        tgt: Sequence[Sequence[int]],
        *,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
        splits: Mapping[str, Any] | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        n_val: int | None = None,
        n_test: int | None = None,
        seed: int = 0,
        batch_size: int = 64,
        name: str = "pairs",
        source: str = "synthetic",
    ) -> None:
        if len(src) != len(tgt):
            raise ValueError(f"{len(src)} source sequences but {len(tgt)} targets: give pairs")
        self.src, self.tgt = list(src), list(tgt)
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        super().__init__(
            len(self.src),
            labels=None,
            splits=splits,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            n_val=n_val,
            n_test=n_test,
            seed=seed,
            batch_size=batch_size,
            name=name,
            source=source,
        )

    def _loader(self, idx, batch_size, shuffle, device, seed, rank, world_size):
        return SequencePairLoader(
            [self.src[i] for i in idx],
            [self.tgt[i] for i in idx],
            batch_size,
            pad_id=self.pad_id,
            bos_id=self.bos_id,
            eos_id=self.eos_id,
            shuffle=shuffle,
            seed=seed,
            device=device,
            rank=rank,
            world_size=world_size,
        )

    def facts(self) -> dict[str, Any]:
        return {
            **super().facts(),
            "max_src_len": max(map(len, self.src), default=0),
            "max_tgt_len": max(map(len, self.tgt), default=0) + 1,  # with BOS / EOS
            "special_ids": {"pad": self.pad_id, "bos": self.bos_id, "eos": self.eos_id},
        }


# --- masked language modelling ------------------------------------------------------------------------


class MaskedLMData(_Split):
    """Token-id sequences (e.g. ``[CLS] sentence [SEP]``) for masked-language-model pre-training,
    masked dynamically as BERT does (see :class:`.loaders.MaskedLMLoader`). Evaluation splits draw
    the same (seeded) masks every time."""

    def __init__(
        self,
        sequences: Sequence[Sequence[int]],
        *,
        vocab_size: int,
        mask_id: int,
        pad_id: int = 0,
        special_ids: Sequence[int] = (),
        mask_prob: float = 0.15,
        splits: Mapping[str, Any] | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        n_val: int | None = None,
        n_test: int | None = None,
        seed: int = 0,
        batch_size: int = 32,
        name: str = "mlm",
        source: str = "synthetic",
    ) -> None:
        self.sequences = list(sequences)
        self.vocab_size, self.mask_id, self.pad_id = int(vocab_size), int(mask_id), int(pad_id)
        self.special_ids, self.mask_prob = tuple(special_ids), float(mask_prob)
        super().__init__(
            len(self.sequences),
            labels=None,
            splits=splits,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            n_val=n_val,
            n_test=n_test,
            seed=seed,
            batch_size=batch_size,
            name=name,
            source=source,
        )
        self._mask_seed = seed

    def _loader(self, idx, batch_size, shuffle, device, seed, rank, world_size):
        return MaskedLMLoader(
            [self.sequences[i] for i in idx],
            batch_size,
            vocab_size=self.vocab_size,
            mask_id=self.mask_id,
            pad_id=self.pad_id,
            special_ids=self.special_ids,
            mask_prob=self.mask_prob,
            shuffle=shuffle,
            fixed=not shuffle,  # evaluation: the same masks every time
            seed=seed if shuffle else self._mask_seed,
            device=device,
            rank=rank,
            world_size=world_size,
        )

    def facts(self) -> dict[str, Any]:
        return {
            **super().facts(),
            "vocab_size": self.vocab_size,
            "mask_prob": self.mask_prob,
            "max_len": max(map(len, self.sequences), default=0),
        }


# --- one graph ------------------------------------------------------------------------------------------


class GraphData(DataModule):
    """One graph for full-batch node classification (GCN): every loader yields the whole graph
    with the mask of its split's nodes.

    x: node features ``(N, F)``; edge_index: ``(2, E)`` (both directions for an undirected graph);
    y: node classes ``(N,)``. Masks: give ``train_mask`` / ``val_mask`` / ``test_mask`` (bool
    ``(N,)``, e.g. the Planetoid split), or let them be carved seeded and stratified by class.
    """

    def __init__(
        self,
        x: Any,
        edge_index: Any,
        y: Any,
        *,
        train_mask: Any = None,
        val_mask: Any = None,
        test_mask: Any = None,
        classes: Sequence[str] = (),
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        n_val: int | None = None,
        n_test: int | None = None,
        seed: int = 0,
        name: str = "graph",
        source: str = "synthetic",
    ) -> None:
        self.x, self.edge_index, self.y = to_tensor(x), to_tensor(edge_index), to_tensor(y)
        n = len(self.x)
        if self.x.dim() != 2 or not self.x.is_floating_point():
            raise ValueError(f"x must be float node features (N, F), got {tuple(self.x.shape)}")
        if self.y.shape != (n,):
            raise ValueError(
                f"y must hold one class per node: shape ({n},), got {tuple(self.y.shape)}"
            )
        if self.edge_index.dim() != 2 or self.edge_index.shape[0] != 2:
            raise ValueError(f"edge_index must be (2, E), got {tuple(self.edge_index.shape)}")
        if self.edge_index.numel() and (
            int(self.edge_index.min()) < 0 or int(self.edge_index.max()) >= n
        ):
            raise ValueError(f"edge_index refers to nodes outside 0..{n - 1}")
        given = {"train": train_mask, "val": val_mask, "test": test_mask}
        if all(m is None for m in given.values()):
            idx = carve(self.y.numpy(), val_fraction, test_fraction, n_val, n_test, seed)
            given = {k: np.isin(np.arange(n), v) for k, v in idx.items()}
        self.masks = {}
        for k, m in given.items():
            m = torch.zeros(n, dtype=torch.bool) if m is None else torch.as_tensor(m)
            if m.shape != (n,) or m.dtype != torch.bool:
                raise ValueError(f"{k}_mask must be bool with one entry per node ({n},)")
            self.masks[k] = m
        if (self.masks["train"] & (self.masks["val"] | self.masks["test"])).any() or (
            self.masks["val"] & self.masks["test"]
        ).any():
            raise ValueError("the train, val and test masks overlap: a node may score in one only")
        if not self.masks["train"].any():
            raise ValueError("train_mask selects no node")
        self.classes, self.name, self.source = list(classes), name, source

    def _loader(self, split, device, rank, world_size):
        if not self.masks[split].any():
            return None
        return GraphLoader(
            _to(self.x, device),
            _to(self.edge_index, device),
            _to(self.y, device),
            _to(self.masks[split], device),
            rank=rank,
            world_size=world_size,
        )

    def train_loader(
        self,
        batch_size: int | None = None,
        *,
        device: Any = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> Any:
        """The whole graph with the train mask (``batch_size`` is ignored: one full batch)."""
        return self._loader("train", device, rank, world_size)

    def val_loader(
        self,
        batch_size: int | None = None,
        *,
        device: Any = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> Any:
        return self._loader("val", device, rank, world_size)

    def test_loader(
        self,
        batch_size: int | None = None,
        *,
        device: Any = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> Any:
        return self._loader("test", device, rank, world_size)

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes else int(self.y.max()) + 1

    def facts(self) -> dict[str, Any]:
        return {
            **super().facts(),
            **{f"n_{k}": int(m.sum()) for k, m in self.masks.items()},
            "num_nodes": len(self.x),
            "num_edges": self.edge_index.shape[1],
            "num_features": self.x.shape[1],
            "num_classes": self.num_classes,
        }

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={int(m.sum())}" for k, m in self.masks.items())
        return f"GraphData({self.name!r}, source={self.source!r}, nodes={len(self.x)}, {sizes})"
