"""The generic DataModules and their loaders (docs/seams.md, section 2): one test family per batch
shape — images with per-image targets, token windows, padded sequence pairs, one graph with node
masks, masked-LM batches — checking shapes, seeded determinism, DDP sharding (the slices of two
"ranks" reassemble the global batch), exact mid-epoch resume from ``state_dict``, and that a tiny
model trains through the Trainer on each.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scratchlib import data
from scratchlib.data.augment import RandomHorizontalFlip
from scratchlib.data.loaders import (
    DetectionLoader,
    GraphLoader,
    MaskedLMLoader,
    SequencePairLoader,
    WindowLoader,
    collate_targets,
)

# --- helpers ----------------------------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Deep equality of batches: tensors, tuples, lists and dicts of them."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def interleave(parts: list[Any]) -> Any:
    """Reassemble a global batch from rank slices ``r::world_size`` (tensors on dim 0, lists,
    tuples and dicts item by item)."""
    first = parts[0]
    if isinstance(first, torch.Tensor):
        n = sum(len(p) for p in parts)
        out = first.new_empty((n, *first.shape[1:]))
        for r, p in enumerate(parts):
            out[r :: len(parts)] = p
        return out
    if isinstance(first, dict):
        return {k: interleave([p[k] for p in parts]) for k in first}
    if isinstance(first, tuple):
        return tuple(interleave([p[i] for p in parts]) for i in range(len(first)))
    if isinstance(first, list):
        out = [None] * sum(len(p) for p in parts)
        for r, p in enumerate(parts):
            out[r :: len(parts)] = p
        return out
    raise TypeError(type(first))


def check_loader_contract(make: Callable[..., Any], stop_after: int = 2) -> None:
    """The three loader rules plus DDP sharding, for ``make(rank=0, world_size=1)``.

    - ``len`` is the number of batches an epoch yields;
    - a second epoch differs from the first only where the loader is random, and two loaders
      built alike give identical epochs (seeded);
    - two ranks' slices, batch by batch, reassemble the one-process batch;
    - after ``stop_after`` batches, ``state_dict`` -> a fresh loader -> ``load_state_dict``
      yields exactly the rest of the interrupted epoch, and then the same next epoch.
    """
    ref = make()
    epoch1, epoch2 = list(ref), list(ref)
    assert len(epoch1) == len(ref) == len(epoch2)
    assert same(epoch1, list(make())), "two loaders built alike give the same batches"
    assert ref.device is not None
    ranks = [make(rank=r, world_size=2) for r in range(2)]
    sharded = [list(x) for x in ranks]
    assert len(sharded[0]) == len(sharded[1]) == len(epoch1)
    for k, whole in enumerate(epoch1):
        assert same(interleave([sharded[0][k], sharded[1][k]]), whole), f"batch {k}"
    a = make()
    it = iter(a)
    head = [next(it) for _ in range(stop_after)]
    state = a.state_dict()
    assert state["position"] == stop_after
    b = make(seed=12345)  # the state, not the constructor's seed, decides what comes next
    b.load_state_dict(state)
    assert same(head + list(b), epoch1), "resume continues the interrupted epoch exactly"
    assert same(list(b), epoch2), "... and then gives the same next epoch"


def images_and_targets(n: int = 12, size: int = 16, seed: int = 0):
    """Dark images each holding one bright square; its box, class 1 and mask as the target."""
    g = torch.Generator().manual_seed(seed)
    images, targets = torch.zeros(n, 1, size, size), []
    for i in range(n):
        s = int(torch.randint(3, 7, (1,), generator=g))
        x0, y0 = (int(v) for v in torch.randint(0, size - s, (2,), generator=g))
        images[i, 0, y0 : y0 + s, x0 : x0 + s] = 1.0
        mask = torch.zeros(1, size, size, dtype=torch.uint8)
        mask[0, y0 : y0 + s, x0 : x0 + s] = 1
        box = torch.tensor([[x0, y0, x0 + s, y0 + s]], dtype=torch.float32)
        targets.append({"boxes": box, "labels": torch.tensor([1]), "masks": mask})
    return images, targets


# --- images with per-image targets ---------------------------------------------------------------


def test_detection_loader_keeps_images_and_targets_together() -> None:
    images, targets = images_and_targets(10)

    def make(seed: int = 3, rank: int = 0, world_size: int = 1):
        return DetectionLoader(images, targets, 4, seed=seed, rank=rank, world_size=world_size)

    check_loader_contract(make)
    for x, ts in make():
        assert x.shape[1:] == (1, 16, 16) and len(ts) == len(x)
        for img, t in zip(x, ts, strict=True):
            # every target still describes its own image: the mask covers the bright square
            assert torch.equal((img[0] > 0.5).to(torch.uint8), t["masks"][0])
            x1, y1, x2, y2 = t["boxes"][0].long().tolist()
            assert img[0, y1:y2, x1:x2].min() == 1.0
    assert len(make()) == 3 and len(list(make())[-1][1]) == 2


def test_images_of_different_sizes_are_padded_per_global_batch() -> None:
    big, small = torch.rand(3, 10, 12), torch.rand(3, 6, 5)
    tb = {"boxes": torch.tensor([[0.0, 0, 4, 4]]), "labels": torch.tensor([2])}
    ts = {**tb, "masks": torch.ones(1, 6, 5, dtype=torch.uint8)}
    x, out = collate_targets([big, small], [tb, ts])
    assert x.shape == (2, 3, 10, 12)
    assert torch.equal(x[1, :, :6, :5], small) and x[1, :, 6:].abs().sum() == 0
    assert out[1]["masks"].shape == (1, 10, 12) and out[1]["masks"].sum() == 30
    assert "masks" not in tb and ts["masks"].shape == (1, 6, 5), "the inputs are not changed"
    # under DDP a rank holding only small images still pads to the global batch's size
    loader = DetectionLoader([small, big], [ts, tb], 2, shuffle=False, rank=0, world_size=2)
    ((x0, _),) = list(loader)
    assert x0.shape == (1, 3, 10, 12)
    with pytest.raises(ValueError, match="one dict per image"):
        collate_targets([big], [tb, tb])


def test_detection_data_validates_targets_and_splits() -> None:
    images, targets = images_and_targets(20)
    dm = data.DetectionData(images, targets, classes=["bg", "square"], n_val=4, n_test=4, seed=1)
    facts = dm.facts()
    assert (facts["n_train"], facts["n_val"], facts["n_test"]) == (12, 4, 4)
    assert facts["image_shape"] == [1, 16, 16] and facts["num_classes"] == 2 and facts["masks"]
    seen = [set(dm.splits[k].tolist()) for k in ("train", "val", "test")]
    assert set().union(*seen) == set(range(20)) and sum(map(len, seen)) == 20
    x, ts = next(iter(dm.test_loader(batch_size=4)))
    first = int(dm.splits["test"][0])
    assert torch.equal(x[0], images[first]) and torch.equal(ts[0]["boxes"], targets[first]["boxes"])
    assert ts[0]["labels"].dtype == torch.long and ts[0]["masks"].dtype == torch.uint8
    bad = [dict(t) for t in targets]
    bad[5] = {**bad[5], "boxes": torch.zeros(1, 5)}
    with pytest.raises(ValueError, match=r"target 5: boxes must be \(k, 4\)"):
        data.DetectionData(images, bad)
    bad[5] = {**targets[5], "masks": torch.zeros(1, 8, 8)}
    with pytest.raises(ValueError, match="target 5: masks must be"):
        data.DetectionData(images, bad)
    bad[5] = {**targets[5], "boxes": torch.tensor([[5.0, 5, 1, 9]])}
    with pytest.raises(ValueError, match="x1 <= x2"):
        data.DetectionData(images, bad)
    with pytest.raises(ValueError, match="20 images but 19 targets"):
        data.DetectionData(images, targets[:-1])


def test_horizontal_flip_moves_boxes_and_masks_with_the_image() -> None:
    images, targets = images_and_targets(40)
    flip = RandomHorizontalFlip(p=0.5, seed=0)
    x, ts = flip((images, targets))
    flipped = 0
    for i in range(len(x)):
        was_flipped = not torch.equal(x[i], images[i])
        flipped += was_flipped
        if was_flipped:
            assert torch.equal(x[i], images[i].flip(-1))
            x1, y1, x2, y2 = targets[i]["boxes"][0].tolist()
            assert ts[i]["boxes"][0].tolist() == [16 - x2, y1, 16 - x1, y2]
        else:
            assert torch.equal(ts[i]["boxes"], targets[i]["boxes"])
        # the box and mask still cover the bright square, flipped or not
        assert torch.equal((x[i, 0] > 0.5).to(torch.uint8), ts[i]["masks"][0])
        bx1, by1, bx2, by2 = ts[i]["boxes"][0].long().tolist()
        assert x[i, 0, by1:by2, bx1:bx2].min() == 1.0
    assert 10 < flipped < 30, "about half flipped"
    again, _ = RandomHorizontalFlip(p=0.5, seed=0)((images, targets))
    assert torch.equal(again, x), "seeded"
    assert torch.equal(RandomHorizontalFlip(p=1.0)(images), images.flip(-1)), "a bare tensor"
    xb, yb = RandomHorizontalFlip(p=1.0)((images, torch.arange(40)))
    assert torch.equal(xb, images.flip(-1)) and torch.equal(yb, torch.arange(40))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        flip(images[0])


# --- token streams ----------------------------------------------------------------------------------


def test_window_loader_draws_shifted_windows_and_is_exact_under_resume_and_ddp() -> None:
    tokens = torch.arange(500) % 97

    def make(seed: int = 0, rank: int = 0, world_size: int = 1):
        return WindowLoader(tokens, 8, 6, seed=seed, rank=rank, world_size=world_size)

    check_loader_contract(make)
    loader = make()
    assert len(loader) == (500 - 1) // (6 * 8)
    x, y = next(iter(loader))
    assert x.shape == y.shape == (6, 8) and x.dtype == y.dtype == torch.long
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y[:, -1], (x[:, -1] + 1) % 97)
    assert not torch.equal(x, next(iter(make(seed=1)))[0]), "the seed chooses the windows"
    with pytest.raises(ValueError, match="too short"):
        WindowLoader(torch.arange(8), 8, 2)


def test_evaluation_windows_are_fixed_and_cover_the_split() -> None:
    tokens = torch.arange(100)
    loader = WindowLoader(tokens, 10, 4, random=False)
    batches = list(loader)
    assert same(batches, list(loader)), "the same windows every evaluation"
    starts = torch.cat([x[:, 0] for x, _ in batches]).tolist()
    assert starts == list(range(0, 90, 10)) and len(loader) == 3
    capped = WindowLoader(tokens, 10, 2, random=False, steps=2)
    assert len(capped) == 2 and torch.cat([x[:, 0] for x, _ in capped]).tolist() == [0, 30, 50, 80]


def test_token_stream_data_splits_contiguously() -> None:
    tokens = torch.arange(1000) % 50
    dm = data.TokenStreamData(tokens, block_size=8, n_val=100, n_test=200, batch_size=4)
    assert dm.ranges == {"train": (0, 700), "val": (700, 800), "test": (800, 1000)}
    assert dm.facts()["n_val"] == 100 and dm.facts()["vocab_size"] == 50
    x, _ = next(iter(dm.val_loader()))
    assert torch.equal(x[0], tokens[700:708])
    for x, y in dm.train_loader(seed=2):
        assert x.max() < 50 and torch.equal(y[:, :-1], x[:, 1:])
    assert len(dm.train_loader()) == 699 // 32
    assert len(data.TokenStreamData(tokens, block_size=8, steps_per_epoch=5).train_loader()) == 5
    with pytest.raises(ValueError, match="val range has 5 tokens"):
        data.TokenStreamData(tokens, block_size=8, n_val=5)
    no_test = data.TokenStreamData(tokens, block_size=8, test_fraction=0)
    assert no_test.test_loader() is None and no_test.val_loader() is not None


# --- padded sequence pairs ---------------------------------------------------------------------------


def test_sequence_pairs_are_padded_with_bos_eos_and_masks() -> None:
    src = [[5, 6, 7], [8], [9, 10]]
    tgt = [[11], [12, 13, 14], []]
    (batch,) = SequencePairLoader(src, tgt, 3, shuffle=False, pad_id=0, bos_id=1, eos_id=2)
    assert batch["src"].tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert batch["src_mask"].tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    assert batch["tgt_in"].tolist() == [[1, 11, 0, 0], [1, 12, 13, 14], [1, 0, 0, 0]]
    assert batch["tgt_out"].tolist() == [[11, 2, 0, 0], [12, 13, 14, 2], [2, 0, 0, 0]]
    assert batch["tgt_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert all(v.dtype == (torch.bool if "mask" in k else torch.long) for k, v in batch.items())
    with pytest.raises(ValueError, match="source sequence 1 is empty"):
        SequencePairLoader([[1], []], [[1], [2]], 2)
    with pytest.raises(ValueError, match="3 source sequences but 2 targets"):
        SequencePairLoader(src, tgt[:2], 2)
    with pytest.raises(ValueError, match="integer token ids"):
        SequencePairLoader([[1.5]], [[1]], 1)


def test_sequence_pair_loader_contract() -> None:
    rng = np.random.default_rng(0)
    src = [rng.integers(3, 20, rng.integers(1, 9)).tolist() for _ in range(30)]
    tgt = [s[::-1] for s in src]

    def make(seed: int = 0, rank: int = 0, world_size: int = 1):
        return SequencePairLoader(src, tgt, 8, seed=seed, rank=rank, world_size=world_size)

    check_loader_contract(make)
    dm = data.SequencePairData(src, tgt, n_val=5, n_test=5, batch_size=8)
    assert dm.facts()["n_train"] == 20 and dm.facts()["max_tgt_len"] == max(map(len, tgt)) + 1
    with pytest.raises(ValueError, match="splits overlap"):
        data.SequencePairData(src, tgt, splits={"train": [0, 1], "val": [1]})


# --- one graph ----------------------------------------------------------------------------------------


def test_graph_loaders_give_the_whole_graph_with_their_split_mask() -> None:
    n = 40
    y = torch.arange(n) % 4
    dm = data.GraphData(torch.rand(n, 3), torch.randint(0, n, (2, 100)), y, n_val=8, n_test=8)
    masks = [
        next(iter(dm.__getattribute__(f"{s}_loader")()))["mask"] for s in ("train", "val", "test")
    ]
    assert [int(m.sum()) for m in masks] == [24, 8, 8]
    assert torch.equal(masks[0] | masks[1] | masks[2], torch.ones(n, dtype=torch.bool))
    assert torch.bincount(y[masks[1]]).tolist() == [2, 2, 2, 2], "stratified by class"
    batch = next(iter(dm.train_loader()))
    assert torch.equal(batch["x"], dm.x) and batch["edge_index"].shape == (2, 100)
    loader = dm.train_loader()
    assert len(loader) == 1 and len(list(loader)) == 1

    def make(seed: int = 0, rank: int = 0, world_size: int = 1):
        return GraphLoader(dm.x, dm.edge_index, y, masks[0], rank=rank, world_size=world_size)

    halves = [next(iter(make(rank=r, world_size=2)))["mask"] for r in range(2)]
    assert not (halves[0] & halves[1]).any() and torch.equal(halves[0] | halves[1], masks[0])
    s = make().state_dict()
    assert s["position"] == 0
    planetoid = data.GraphData(
        torch.rand(n, 3),
        torch.zeros(2, 0, dtype=torch.long),
        y,
        train_mask=torch.arange(n) < 10,
        test_mask=torch.arange(n) >= 30,
    )
    assert planetoid.val_loader() is None and planetoid.facts()["n_test"] == 10
    with pytest.raises(ValueError, match="overlap"):
        data.GraphData(torch.rand(n, 3), torch.zeros(2, 0), y, train_mask=y >= 0, test_mask=y == 1)
    with pytest.raises(ValueError, match="outside 0..39"):
        data.GraphData(torch.rand(n, 3), torch.tensor([[0], [40]]), y)


# --- masked language modelling ----------------------------------------------------------------------

PAD, CLS, SEP, MASK, VOCAB = 0, 1, 2, 3, 30


def sentences(n: int = 200, seed: int = 0) -> list[list[int]]:
    """[CLS] w w ... w [SEP]: one word repeated 4 to 15 times, so a masked word is predictable."""
    rng = np.random.default_rng(seed)
    return [[CLS, *[int(rng.integers(4, VOCAB))] * int(rng.integers(4, 16)), SEP] for _ in range(n)]


def test_masked_lm_batches_follow_bert_masking() -> None:
    seqs = sentences(400)
    loader = MaskedLMLoader(
        seqs, 400, vocab_size=VOCAB, mask_id=MASK, special_ids=(CLS, SEP), shuffle=False
    )
    (b,) = list(loader)
    ids, _ = data.pad_sequences(seqs)
    ids = ids[:, : b["labels"].shape[1]]
    chosen = b["labels"] != -100
    assert torch.equal(b["labels"][chosen], ids[chosen]), "labels are the original tokens"
    assert torch.equal(b["input_ids"][~chosen], ids[~chosen]), "nothing else changes"
    assert not torch.isin(ids[chosen], torch.tensor([PAD, CLS, SEP])).any(), "specials never"
    assert torch.equal(b["attention_mask"], ids != PAD)
    assert chosen.any(1).all(), "every sequence predicts something"
    real = (b["attention_mask"] & (ids != CLS) & (ids != SEP)).sum()
    assert 0.13 < chosen.sum() / real < 0.19
    masked = (b["input_ids"][chosen] == MASK).float().mean()
    kept = (b["input_ids"][chosen] == ids[chosen]).float().mean()
    assert 0.75 < masked < 0.85 and 0.06 < kept < 0.16  # 80% [MASK]; 10% kept (+ random hits)
    again = list(
        MaskedLMLoader(
            seqs, 400, vocab_size=VOCAB, mask_id=MASK, special_ids=(CLS, SEP), shuffle=False
        )
    )
    assert same(again, [b]), "seeded"
    assert not same(list(loader), [b]), "dynamic: new masks the next epoch"
    fixed = MaskedLMLoader(seqs, 64, vocab_size=VOCAB, mask_id=MASK, shuffle=False, fixed=True)
    assert same(list(fixed), list(fixed)), "evaluation masks are the same every time"
    with pytest.raises(ValueError, match=r"\[0, vocab_size=30\)"):
        MaskedLMLoader([[1, 30]], 1, vocab_size=VOCAB, mask_id=MASK)


def test_masked_lm_loader_contract_and_data_module() -> None:
    seqs = sentences(40)

    def make(seed: int = 0, rank: int = 0, world_size: int = 1):
        return MaskedLMLoader(
            seqs,
            8,
            vocab_size=VOCAB,
            mask_id=MASK,
            special_ids=(CLS, SEP),
            seed=seed,
            rank=rank,
            world_size=world_size,
        )

    check_loader_contract(make)
    dm = data.MaskedLMData(
        seqs, vocab_size=VOCAB, mask_id=MASK, special_ids=(CLS, SEP), n_val=8, n_test=8
    )
    assert same(list(dm.val_loader()), list(dm.val_loader())), "validation masks are fixed"
    assert dm.facts()["n_train"] == 24 and dm.facts()["vocab_size"] == VOCAB


# --- through the Trainer ---------------------------------------------------------------------------


def fit_and_measure(model: nn.Module, dm: Any, **trainer_kw: Any) -> tuple[float, float]:
    """Mean validation loss before and after a short fit."""
    from scratchlib.train import Trainer

    def val_loss() -> float:
        model.eval()
        with torch.no_grad():
            losses = [
                float(model.validation_step(b, i)["loss"]) for i, b in enumerate(dm.val_loader())
            ]
        return sum(losses) / len(losses)

    before = val_loss()
    Trainer(progress=False, device="cpu", **trainer_kw).fit(model, dm)
    after = val_loss()
    assert math.isfinite(after)
    return before, after


class Stepped(nn.Module):
    """A tiny model whose ``loss(batch)`` is used for both steps."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.loss(batch)

    def validation_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        return {"loss": self.loss(batch)}


class BoxRegressor(Stepped):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, 4))

    def loss(self, batch):
        images, targets = batch
        boxes = torch.stack([t["boxes"][0] for t in targets]) / 16
        return F.mse_loss(self.net(images), boxes)


class Bigram(Stepped):
    def __init__(self, vocab: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.table = nn.Embedding(vocab, vocab)

    def loss(self, batch):
        x, y = batch
        return F.cross_entropy(self.table(x).flatten(0, 1), y.flatten())


class PairModel(Stepped):
    def __init__(self, vocab: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.src, self.tgt, self.out = (
            nn.Embedding(vocab, 16),
            nn.Embedding(vocab, 16),
            nn.Linear(16, vocab),
        )

    def loss(self, b):
        ctx = (self.src(b["src"]) * b["src_mask"][..., None]).sum(1) / b["src_mask"].sum(
            1, keepdim=True
        )
        logits = self.out(torch.tanh(self.tgt(b["tgt_in"]) + ctx[:, None]))
        return F.cross_entropy(logits[b["tgt_mask"]], b["tgt_out"][b["tgt_mask"]])


class TinyGCN(Stepped):
    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(features, classes)

    def loss(self, b):
        n = len(b["x"])
        adj = torch.zeros(n, n).index_put_(
            tuple(b["edge_index"]), torch.ones(b["edge_index"].shape[1]), accumulate=True
        )
        adj = adj + torch.eye(n)
        h = (adj / adj.sum(1, keepdim=True)) @ self.lin(b["x"])
        return F.cross_entropy(h[b["mask"]], b["y"][b["mask"]])


class TinyMLM(Stepped):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.out = nn.Embedding(VOCAB, 16), nn.Linear(16, VOCAB)

    def loss(self, b):
        h = self.emb(b["input_ids"]) * b["attention_mask"][..., None]
        ctx = h.sum(1, keepdim=True) / b["attention_mask"].sum(1)[:, None, None]
        logits = self.out(h + ctx)
        return F.cross_entropy(logits.flatten(0, 1), b["labels"].flatten(), ignore_index=-100)


@pytest.mark.usefixtures("one_torch_thread")
def test_every_shape_trains_through_the_trainer() -> None:
    images, targets = images_and_targets(64)
    text = torch.tensor([i % 7 for i in range(3000)])
    rng = np.random.default_rng(0)
    src = [rng.integers(3, 12, rng.integers(2, 6)).tolist() for _ in range(120)]
    y = torch.arange(60) % 3
    x = F.one_hot(y, 3).float() + 0.5 * torch.randn(
        60, 3, generator=torch.Generator().manual_seed(0)
    )
    ring = torch.stack([torch.arange(60), (torch.arange(60) + 3) % 60])
    cases = [
        (
            "detection",
            BoxRegressor(),
            data.DetectionData(images, targets),
            dict(epochs=15, batch_size=16, lr=3e-3),
        ),
        (
            "tokens",
            Bigram(7),
            data.TokenStreamData(text, block_size=16, batch_size=16),
            dict(epochs=5, lr=0.1),
        ),
        (
            "pairs",
            PairModel(12),
            data.SequencePairData(src, [s[::-1] for s in src]),
            dict(epochs=8, batch_size=16, lr=1e-2),
        ),
        ("graph", TinyGCN(3, 3), data.GraphData(x, ring, y), dict(epochs=30, lr=0.05)),
        (
            "mlm",
            TinyMLM(),
            data.MaskedLMData(
                sentences(120), vocab_size=VOCAB, mask_id=MASK, special_ids=(CLS, SEP)
            ),
            dict(epochs=8, batch_size=16, lr=1e-2),
        ),
    ]
    for name, model, dm, kw in cases:
        before, after = fit_and_measure(model, dm, **kw)
        assert after < 0.9 * before, f"{name}: validation loss {before:.3f} -> {after:.3f}"


@pytest.mark.usefixtures("one_torch_thread")
def test_iteration_training_on_token_windows_with_max_steps() -> None:
    text = torch.tensor([i % 5 for i in range(2000)])
    dm = data.TokenStreamData(text, block_size=8, batch_size=8)
    before, after = fit_and_measure(Bigram(5), dm, max_steps=60, lr=0.1)
    assert after < 0.5 * before


@pytest.mark.usefixtures("one_torch_thread")
def test_fit_validates_on_the_val_split_and_only_trainer_test_touches_the_test_split() -> None:
    import dataclasses

    from scratchlib.train import Trainer

    moons = data.load("moons", n=200)
    calls: list[str] = []

    class Spy(data.DataBundle):
        def val_loader(self, *args: Any, **kwargs: Any):
            calls.append("val")
            return super().val_loader(*args, **kwargs)

        def test_loader(self, *args: Any, **kwargs: Any):
            calls.append("test")
            return super().test_loader(*args, **kwargs)

    spy = Spy(**{f.name: getattr(moons, f.name) for f in dataclasses.fields(moons)})
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
    trainer = Trainer(epochs=2, batch_size=32, progress=False, device="cpu")
    trainer.fit(model, spy)
    assert calls == ["val"], "fit never looks at the test split"
    metrics = trainer.test(model, spy)
    assert calls == ["val", "test"]
    with torch.no_grad():
        pred = model(torch.as_tensor(moons.x_test)).argmax(1).numpy()
    assert metrics["accuracy"] == pytest.approx((pred == moons.y_test).mean())
