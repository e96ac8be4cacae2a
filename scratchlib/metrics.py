"""Metrics shared by notebooks, models, plots and the CLI (NumPy in, floats out).

A leaf module: it imports only NumPy (plots and models import it, never the other way round).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["to_numpy", "accuracy", "error_rate", "confusion_counts"]


def to_numpy(a: Any) -> np.ndarray:
    """A NumPy array from a NumPy array, a list or a (possibly GPU) torch tensor."""
    if hasattr(a, "detach"):
        a = a.detach().float().cpu().numpy()
    return np.asarray(a)


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of predictions equal to the labels (``y_pred`` may be class scores)."""
    yt, yp = to_numpy(y_true).ravel(), to_numpy(y_pred)
    if yp.ndim == 2:
        yp = yp.argmax(1)
    yp = yp.ravel()
    if yt.shape != yp.shape:
        raise ValueError(f"y_true and y_pred differ in length: {yt.shape} vs {yp.shape}")
    return float(np.mean(yt == yp))


def error_rate(y_true: Any, y_pred: Any) -> float:
    """``1 - accuracy``: papers of the era report test *error*."""
    return 1.0 - accuracy(y_true, y_pred)


def confusion_counts(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """``C[i, j]`` = examples of true class i predicted as j."""
    yt, yp = to_numpy(y_true).astype(int).ravel(), to_numpy(y_pred).astype(int).ravel()
    k = num_classes or int(max(yt.max(), yp.max())) + 1
    if min(yt.min(), yp.min()) < 0 or max(yt.max(), yp.max()) >= k:
        raise ValueError(
            f"confusion_counts: labels must be class indices 0..{k - 1} (map ±1 labels to 0/1 first)"
        )
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (yt, yp), 1)
    return cm


# ---------------------------------------------------------------------------------------------
# Detection and segmentation (Module 3): mask IoU, Dice, and COCO's mean average precision.
# Proven equal to pycocotools' COCOeval in tests/test_detection_metrics.py.
# ---------------------------------------------------------------------------------------------

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # mAP@[.5:.95]: ten IoU thresholds
COCO_RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCO interpolates precision at 101 recalls
COCO_AREAS = {
    "all": (0.0, 1e10),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e10),
}

__all__ += [
    "mask_iou",
    "dice",
    "mask_iou_matrix",
    "mean_average_precision",
    "COCO_IOU_THRESHOLDS",
    "COCO_RECALL_POINTS",
]


def _array(a: Any, dtype: Any = None) -> np.ndarray:
    if hasattr(a, "detach"):  # a (possibly GPU) torch tensor
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype)


def _binary(mask: Any, name: str) -> np.ndarray:
    m = _array(mask)
    return m > 0.5 if m.dtype.kind == "f" else m.astype(bool)  # probabilities are cut at 0.5


def mask_iou(pred: Any, target: Any) -> float:
    """Foreground IoU of two binary masks of the same shape: |P ∩ T| / |P ∪ T| (1.0 when both are
    empty: nothing to find, nothing found). Float masks are probabilities, cut at 0.5."""
    p, t = _binary(pred, "pred"), _binary(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"mask_iou: pred and target shapes differ: {p.shape} vs {t.shape}")
    union = np.logical_or(p, t).sum()
    return 1.0 if union == 0 else float(np.logical_and(p, t).sum() / union)


def dice(pred: Any, target: Any) -> float:
    """Dice coefficient of two binary masks: 2 |P ∩ T| / (|P| + |T|) (1.0 when both are empty)."""
    p, t = _binary(pred, "pred"), _binary(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"dice: pred and target shapes differ: {p.shape} vs {t.shape}")
    total = p.sum() + t.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(p, t).sum() / total)


def mask_iou_matrix(masks1: Any, masks2: Any) -> np.ndarray:
    """IoU of every pair of binary masks ``(N, H, W), (M, H, W) -> (N, M)`` (0 where both are empty)."""
    a, b = _binary(masks1, "masks1"), _binary(masks2, "masks2")
    if a.ndim != 3 or b.ndim != 3 or a.shape[1:] != b.shape[1:]:
        raise ValueError(
            f"mask_iou_matrix needs (N, H, W) and (M, H, W) masks of one image size; got {a.shape}, {b.shape}"
        )
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _pairwise_iou(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray, iou_type: str) -> np.ndarray:
    """IoU of detections (rows) with ground truths (columns), COCO's way: against a crowd region
    the union is the detection alone (|D ∩ G| / |D|), so a detection inside a crowd is not penalised."""
    if len(dt) == 0 or len(gt) == 0:
        return np.zeros((len(dt), len(gt)))
    if iou_type == "bbox":
        lt = np.maximum(dt[:, None, :2], gt[None, :, :2])
        rb = np.minimum(dt[:, None, 2:], gt[None, :, 2:])
        wh = np.clip(rb - lt, 0, None)
        inter = wh[..., 0] * wh[..., 1]
        area_d = (dt[:, 2] - dt[:, 0]) * (dt[:, 3] - dt[:, 1])
        area_g = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    else:
        d = dt.reshape(len(dt), -1).astype(np.float64)
        g = gt.reshape(len(gt), -1).astype(np.float64)
        inter = d @ g.T
        area_d, area_g = d.sum(1), g.sum(1)
    union = np.where(crowd[None, :], area_d[:, None], area_d[:, None] + area_g[None, :] - inter)
    return np.divide(inter, union, out=np.zeros_like(inter, dtype=np.float64), where=union > 0)


def _match_image(ious, gt_ignore, gt_crowd, dt_area, area_range, thresholds):
    """COCOeval.evaluateImg for one image and class: greedy matching in score order.

    Each detection (highest score first) takes the unmatched ground truth it overlaps most, if that
    IoU is >= the threshold; ignored ground truths (crowds, other sizes) are used only when no
    regular one is left, and a detection matched to one is ignored rather than counted.
    """
    n_t, (n_d, n_g) = len(thresholds), ious.shape
    gt_match = np.full((n_t, n_g), -1)
    dt_match = np.full((n_t, n_d), -1)
    dt_ignore = np.zeros((n_t, n_d), dtype=bool)
    for ti, t in enumerate(thresholds):
        for d in range(n_d):
            best, m = min(t, 1 - 1e-10), -1
            for g in range(n_g):
                if gt_match[ti, g] >= 0 and not gt_crowd[g]:
                    continue  # already taken (a crowd can take many)
                if m > -1 and not gt_ignore[m] and gt_ignore[g]:
                    break  # a regular match beats any ignored one (they are sorted last)
                if ious[d, g] < best:
                    continue
                best, m = ious[d, g], g
            if m > -1:
                dt_ignore[ti, d] = gt_ignore[m]
                dt_match[ti, d] = m
                gt_match[ti, m] = d
    outside = (dt_area < area_range[0]) | (dt_area > area_range[1])
    dt_ignore |= (dt_match < 0) & outside[None, :]  # unmatched detections of another size: ignored
    return dt_match, dt_ignore


def _precision_at_recalls(tp: np.ndarray, fp: np.ndarray, n_gt: int) -> tuple[np.ndarray, float]:
    """COCO's interpolated precision at 101 recall points, and the final recall.

    p_interp(r) = max_{r' >= r} p(r'): precision made monotone from the right, then read at the
    first detection whose recall reaches each point r (0 where recall never gets there).
    """
    tp_sum, fp_sum = np.cumsum(tp).astype(float), np.cumsum(fp).astype(float)
    recall = tp_sum / n_gt
    precision = tp_sum / (tp_sum + fp_sum + np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the envelope
    q = np.zeros(len(COCO_RECALL_POINTS))
    idx = np.searchsorted(recall, COCO_RECALL_POINTS, side="left")
    ok = idx < len(precision)
    q[ok] = precision[idx[ok]]
    return q, (float(recall[-1]) if len(recall) else 0.0)


def mean_average_precision(
    preds: list[dict[str, Any]],
    targets: list[dict[str, Any]],
    iou_type: str = "bbox",
    iou_thresholds: Any = None,
    max_detections: tuple[int, ...] = (1, 10, 100),
    class_metrics: bool = False,
) -> dict[str, Any]:
    """COCO's detection metrics (pycocotools' COCOeval, re-implemented and tested equal to it).

    ``preds``: one dict per image with ``boxes`` ``(N, 4)`` xyxy pixels, ``scores`` ``(N,)``,
    ``labels`` ``(N,)`` (and ``masks`` ``(N, H, W)`` for ``iou_type="segm"``); ``targets``: one dict
    per image with ``boxes``, ``labels`` (and ``masks``), optionally ``iscrowd`` ``(k,)``.

    For each class and IoU threshold, detections of all images are ranked by score; a detection is
    a true positive if it matches an unclaimed ground truth with IoU >= threshold. AP is the mean
    of the interpolated precision at 101 recall points; mAP averages over the classes that have
    ground truth (and, for ``map``, over the thresholds 0.5, 0.55, ..., 0.95).

    Returns ``map`` (mAP@[.5:.95]), ``map_50``, ``map_75``, ``map_small`` / ``_medium`` /
    ``_large`` (COCO's area ranges, in pixels²), ``mar_1`` / ``mar_10`` / ``mar_100`` (recall
    with at most that many detections per image and class), and with ``class_metrics`` the
    ``classes`` and their ``map_per_class`` / ``mar_100_per_class``. -1 marks "nothing to measure".
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' (boxes) or 'segm' (masks); got {iou_type!r}")
    if not isinstance(preds, (list, tuple)) or not isinstance(targets, (list, tuple)):
        raise TypeError("preds and targets must be lists of per-image dicts (one dict per image)")
    if len(preds) != len(targets):
        raise ValueError(
            f"{len(preds)} prediction dicts but {len(targets)} target dicts: one of each per image"
        )
    thresholds = (
        COCO_IOU_THRESHOLDS
        if iou_thresholds is None
        else np.asarray(iou_thresholds, dtype=float).ravel()
    )
    key = "boxes" if iou_type == "bbox" else "masks"
    images = []
    for i, (p, t) in enumerate(zip(preds, targets, strict=True)):
        for what, d, need in (
            ("preds", p, (key, "scores", "labels")),
            ("targets", t, (key, "labels")),
        ):
            missing = [k for k in need if k not in d]
            if missing:
                raise KeyError(
                    f"{what}[{i}] has no {missing}; it needs {list(need)} for iou_type={iou_type!r}"
                )
        dt, gt = _array(p[key]), _array(t[key])
        if iou_type == "bbox":
            dt, gt = dt.reshape(-1, 4).astype(np.float64), gt.reshape(-1, 4).astype(np.float64)
            dt_area = (dt[:, 2] - dt[:, 0]) * (dt[:, 3] - dt[:, 1])
            gt_area = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
        else:
            dt, gt = _binary(dt, "masks"), _binary(gt, "masks")
            dt_area = dt.reshape(len(dt), -1).sum(1).astype(float) if dt.size else np.zeros(len(dt))
            gt_area = gt.reshape(len(gt), -1).sum(1).astype(float) if gt.size else np.zeros(len(gt))
        scores, dl, gl = (
            _array(p["scores"], float).ravel(),
            _array(p["labels"]).ravel(),
            _array(t["labels"]).ravel(),
        )
        if not (len(dt) == len(scores) == len(dl)) or len(gt) != len(gl):
            raise ValueError(f"image {i}: {key}, scores and labels must have one entry per object")
        crowd = _array(t.get("iscrowd", np.zeros(len(gt))), bool).ravel()
        images.append(
            (dt, scores, dl.astype(np.int64), dt_area, gt, gl.astype(np.int64), gt_area, crowd)
        )
    classes = sorted({int(c) for im in images for c in np.concatenate([im[2], im[5]])})
    areas = list(COCO_AREAS.values())
    n_t, n_r, n_k, n_a, n_m = (
        len(thresholds),
        len(COCO_RECALL_POINTS),
        len(classes),
        len(areas),
        len(max_detections),
    )
    precision = -np.ones((n_t, n_r, n_k, n_a, n_m))
    recall = -np.ones((n_t, n_k, n_a, n_m))
    max_det = max(max_detections)
    for ki, c in enumerate(classes):
        # per image: detections of class c by score (stable), the top max_det, and IoUs with its gts
        per_image = []
        for dt, scores, dl, dt_area, gt, gl, gt_area, crowd in images:
            d_idx, g_idx = np.where(dl == c)[0], np.where(gl == c)[0]
            if len(d_idx) == 0 and len(g_idx) == 0:
                continue
            d_idx = d_idx[np.argsort(-scores[d_idx], kind="mergesort")][:max_det]
            ious = _pairwise_iou(dt[d_idx], gt[g_idx], crowd[g_idx], iou_type)
            per_image.append((scores[d_idx], dt_area[d_idx], ious, gt_area[g_idx], crowd[g_idx]))
        for ai, rng in enumerate(areas):
            evals = []
            for s, d_area, ious, g_area, g_crowd in per_image:
                g_ignore = g_crowd | (g_area < rng[0]) | (g_area > rng[1])
                order = np.argsort(g_ignore, kind="mergesort")  # regular gts first
                m, ig = _match_image(
                    ious[:, order], g_ignore[order], g_crowd[order], d_area, rng, thresholds
                )
                evals.append((s, m, ig, int((~g_ignore).sum())))
            n_gt = sum(e[3] for e in evals)
            if n_gt == 0:
                continue  # no ground truth of this class and size: nothing to measure
            for mi, md in enumerate(max_detections):
                s = np.concatenate([e[0][:md] for e in evals])
                order = np.argsort(-s, kind="mergesort")
                match = np.concatenate([e[1][:, :md] for e in evals], axis=1)[:, order]
                ignore = np.concatenate([e[2][:, :md] for e in evals], axis=1)[:, order]
                for ti in range(n_t):
                    tp = (match[ti] >= 0) & ~ignore[ti]
                    fp = (match[ti] < 0) & ~ignore[ti]
                    q, r = _precision_at_recalls(tp, fp, n_gt)
                    precision[ti, :, ki, ai, mi], recall[ti, ki, ai, mi] = q, r

    def mean(a: np.ndarray) -> float:
        a = a[a > -1]
        return float(a.mean()) if a.size else -1.0

    last = n_m - 1
    out: dict[str, Any] = {"map": mean(precision[:, :, :, 0, last])}
    for name, t in (("map_50", 0.5), ("map_75", 0.75)):
        hit = np.where(np.isclose(thresholds, t))[0]
        if hit.size:
            out[name] = mean(precision[hit[0], :, :, 0, last])
    for ai, name in enumerate(COCO_AREAS):
        if name != "all":
            out[f"map_{name}"] = mean(precision[:, :, :, ai, last])
    for mi, md in enumerate(max_detections):
        out[f"mar_{md}"] = mean(recall[:, :, 0, mi])
    if class_metrics:
        out["classes"] = classes
        out["map_per_class"] = [mean(precision[:, :, k, 0, last]) for k in range(n_k)]
        out[f"mar_{max_det}_per_class"] = [mean(recall[:, k, 0, last]) for k in range(n_k)]
    return out


# ---------------------------------------------------------------------------------------------
# Sequence models (Module 4): language-model scores, sequence accuracy, and sampling.
# Tested in tests/test_sequence_models.py. Sampling works on torch logits (torch imported lazily,
# so this file stays a NumPy-only leaf at import time).
# ---------------------------------------------------------------------------------------------

__all__ += [
    "perplexity",
    "bits_per_char",
    "token_accuracy",
    "sequence_accuracy",
    "filter_logits",
    "sample_next",
]


def perplexity(mean_nll: float) -> float:
    """``exp(cross-entropy in nats)``: the number of equally likely choices the model is as unsure as."""
    return float(np.exp(mean_nll))


def bits_per_char(mean_nll: float, chars_per_token: float = 1.0) -> float:
    """Cross-entropy in bits per character: ``nats / ln 2``, divided by the characters per token
    (1 for a character model; ``len(text) / len(tokens)`` for words or BPE)."""
    if chars_per_token <= 0:
        raise ValueError(f"chars_per_token must be positive; got {chars_per_token}")
    return float(mean_nll / np.log(2) / chars_per_token)


def _sequences(y_true: Any, y_pred: Any, mask: Any, ignore_index: int) -> tuple[np.ndarray, ...]:
    yt, yp = to_numpy(y_true), to_numpy(y_pred)
    if yp.ndim == yt.ndim + 1:  # scores (N, T, V): the predicted token is the argmax
        yp = yp.argmax(-1)
    if yt.shape != yp.shape:
        raise ValueError(f"y_true {yt.shape} and y_pred {yp.shape} differ; want (N, T) tokens")
    if yt.ndim == 1:
        yt, yp = yt[None], yp[None]
    keep = yt != ignore_index if mask is None else to_numpy(mask).astype(bool)
    if keep.shape != yt.shape:
        raise ValueError(f"mask {keep.shape} does not match the targets {yt.shape}")
    return yt, yp, keep


def token_accuracy(y_true: Any, y_pred: Any, mask: Any = None, ignore_index: int = -100) -> float:
    """Fraction of scored positions predicted right. y: (N, T) tokens (``y_pred`` may be scores
    (N, T, V)); ``mask`` (N, T) True where scored, else every target but ``ignore_index``."""
    yt, yp, keep = _sequences(y_true, y_pred, mask, ignore_index)
    n = keep.sum()
    return float(((yt == yp) & keep).sum() / n) if n else float("nan")


def sequence_accuracy(
    y_true: Any, y_pred: Any, mask: Any = None, ignore_index: int = -100
) -> float:
    """Fraction of sequences right at *every* scored position (exact match).

    y: (N, T) token arrays (``y_pred`` may be scores (N, T, V)), or two lists of strings.
    """
    if (
        isinstance(y_true, (list, tuple))
        and y_true
        and all(isinstance(s, str) for s in [*y_true, *y_pred])
    ):
        if len(y_true) != len(y_pred):
            raise ValueError(f"{len(y_true)} targets but {len(y_pred)} predictions")
        return float(np.mean([a == b for a, b in zip(y_true, y_pred, strict=True)]))
    yt, yp, keep = _sequences(y_true, y_pred, mask, ignore_index)
    return float(np.mean(np.all((yt == yp) | ~keep, axis=1)))


def filter_logits(logits: Any, top_k: int | None = None, top_p: float | None = None) -> Any:
    """Logits (..., V) with every token outside the top-k and outside the nucleus set to −inf.

    top-k (Fan, Lewis & Dauphin 2018): keep the k most likely tokens. Nucleus / top-p (Holtzman et
    al. 2020): keep the smallest set of most likely tokens whose probability reaches p.
    """
    import torch

    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1; got {top_k}")
        k = min(int(top_k), logits.shape[-1])
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p is a probability in (0, 1]; got {top_p}")
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        drop = cum - torch.softmax(sorted_logits, dim=-1) >= top_p  # mass before this token ≥ p
        drop[..., 0] = False  # the most likely token always stays
        unsorted = torch.zeros_like(drop).scatter(-1, order, drop)  # back to vocabulary order
        logits = logits.masked_fill(unsorted, float("-inf"))
    return logits


def sample_next(
    logits: Any,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: Any = None,
) -> Any:
    """Draw one token id per row from logits (B, V) -> (B, 1) (a torch tensor).

    ``p ∝ exp(logit / temperature)``: below 1 sharper, above 1 flatter; ``temperature=0`` is greedy
    (the argmax). ``top_k`` / ``top_p`` cut the tail first (:func:`filter_logits`).
    """
    import torch

    if logits.dim() != 2:
        raise ValueError(f"sample_next wants logits of shape (B, V); got {tuple(logits.shape)}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0; got {temperature}")
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


# ---------------------------------------------------------------------------------------------
# Segmentation boundaries (Module 3, U-Net): tests/test_detection_metrics.py
# ---------------------------------------------------------------------------------------------

__all__ += ["boundary_iou"]


def _erode(mask: np.ndarray, d: int) -> np.ndarray:
    """Binary erosion of the last two axes by a (2d+1) x (2d+1) square; outside the image is empty."""
    pad = [(0, 0)] * (mask.ndim - 2) + [(d, d), (d, d)]
    windows = np.lib.stride_tricks.sliding_window_view(
        np.pad(mask, pad), (2 * d + 1, 2 * d + 1), axis=(-2, -1)
    )
    return windows.all(axis=(-2, -1))


def boundary_iou(pred: Any, target: Any, dilation: int = 2) -> float:
    """Boundary IoU (Cheng, Girshick, Dollár, Berg & Kirillov, CVPR 2021): the IoU of the two masks'
    inner boundary bands, the pixels of each mask within ``dilation`` pixels of its contour
    (chessboard distance here; the image border counts as contour). Unlike mask IoU it does not
    let a large, easy interior hide a ragged outline. 1.0 when both bands are empty."""
    p, t = _binary(pred, "pred"), _binary(target, "target")
    if p.shape != t.shape or p.ndim < 2:
        raise ValueError(
            f"boundary_iou needs two masks of one (..., H, W) shape; got {p.shape}, {t.shape}"
        )
    if dilation < 1:
        raise ValueError(f"dilation is a width in pixels, at least 1; got {dilation}")
    pb, tb = p & ~_erode(p, dilation), t & ~_erode(t, dilation)
    union = np.logical_or(pb, tb).sum()
    return 1.0 if union == 0 else float(np.logical_and(pb, tb).sum() / union)
