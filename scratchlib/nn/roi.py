"""Region-of-interest pooling from tensor ops: a fixed-size feature for a box of any size.

* :func:`roi_pool` — Fast R-CNN (Girshick 2015, Section 2.1): snap the box to the feature grid,
  split it into ``output_size`` bins, take the max of each bin. The two roundings misalign the
  feature with the box by up to a stride.
* :func:`roi_align` — Mask R-CNN (He et al. 2017, Section 3): no rounding; each bin averages
  ``sampling_ratio²`` bilinearly interpolated points. The paper's ablation (Table 2c,
  ResNet-50-C4): mask AP 26.9 -> 30.2 and AP@0.75 26.4 -> 31.8 going from RoIPool to RoIAlign.

Both follow torchvision's kernels exactly (tests/test_boxes.py checks values and gradients):
``boxes`` is a ``(K, 5)`` tensor ``(batch index, x1, y1, x2, y2)`` or a list of ``(L_i, 4)``
tensors, one per image, in input-image pixels; ``spatial_scale`` maps them onto the feature map
(1 / stride). Autograd gives the backward pass.
"""

from __future__ import annotations

import torch

__all__ = ["roi_pool", "roi_align", "to_rois", "RoIPool", "RoIAlign"]


def to_rois(boxes: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """``(K, 5)`` rows ``(batch index, x1, y1, x2, y2)`` from a list of per-image ``(L_i, 4)`` boxes."""
    if isinstance(boxes, (list, tuple)):
        for b in boxes:
            if not isinstance(b, torch.Tensor) or b.dim() != 2 or b.shape[1] != 4:
                got = tuple(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__
                raise ValueError(f"each image's boxes must be a (L, 4) tensor; got {got}")
        if not boxes:
            raise ValueError("to_rois: an empty list (give one (L, 4) tensor per image)")
        idx = torch.cat(
            [
                torch.full((len(b), 1), i, dtype=b.dtype, device=b.device)
                for i, b in enumerate(boxes)
            ]
        )
        return torch.cat([idx, torch.cat(list(boxes))], dim=1)
    if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or boxes.shape[1] != 5:
        got = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise ValueError(
            f"boxes must be (K, 5) rows (batch index, x1, y1, x2, y2) or a list of (L, 4) tensors; got {got}"
        )
    return boxes


def _check(input: torch.Tensor, rois: torch.Tensor, output_size) -> tuple[int, int]:
    if input.dim() != 4:
        raise ValueError(f"input must be a (N, C, H, W) feature map; got {tuple(input.shape)}")
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if ph <= 0 or pw <= 0:
        raise ValueError(f"output_size must be positive; got {output_size}")
    if rois.numel() and (rois[:, 0].min() < 0 or rois[:, 0].max() >= input.shape[0]):
        raise IndexError(
            f"a box names batch index {int(rois[:, 0].max())}, but the input holds {input.shape[0]} images"
        )
    return ph, pw


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    # C's round(): halves go away from zero (torch.round sends them to the even neighbour)
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def roi_pool(
    input: torch.Tensor,
    boxes: torch.Tensor | list[torch.Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
) -> torch.Tensor:
    """Max-pool each box into ``output_size`` bins -> ``(K, C, PH, PW)`` (Fast R-CNN's RoI pooling).

    The box is rounded onto the feature grid (x1 = round(x1 * scale), ...), bin (i, j) covers rows
    [floor(i * h / PH), ceil((i + 1) * h / PH)) of the box (and likewise columns); an empty bin is 0.
    Each bin's candidate pixels (at most the largest bin's) are gathered in row-major order and
    masked to the bin; the first of equal maxima wins, as in torchvision's kernel, and the gradient
    flows to that one pixel.
    """
    rois = to_rois(boxes)
    ph, pw = _check(input, rois, output_size)
    if input.dtype in (
        torch.float16,
        torch.bfloat16,
    ):  # box geometry needs float32 (as torchvision)
        return roi_pool(input.float(), rois.float(), output_size, spatial_scale).to(input.dtype)
    n, c, height, width = input.shape
    k = rois.shape[0]
    if k == 0:
        return input.new_zeros((k, c, ph, pw))
    # in the input's precision, as the kernel computes: a bin edge that lands on a whole number
    # in float32 must not land just below it
    scaled = _round_half_away(rois[:, 1:].detach().to(input.dtype) * spatial_scale)
    x1, y1, x2, y2 = scaled.unbind(1)
    roi_w = (x2 - x1 + 1).clamp(min=1)  # Fast R-CNN counts pixels inclusively
    roi_h = (y2 - y1 + 1).clamp(min=1)
    # bin edges in feature pixels, (K, PH) and (K, PW)
    i = torch.arange(ph, dtype=input.dtype, device=input.device)
    j = torch.arange(pw, dtype=input.dtype, device=input.device)
    bin_h, bin_w = roi_h / ph, roi_w / pw
    hstart = (torch.floor(i[None] * bin_h[:, None]) + y1[:, None]).clamp(0, height).long()
    hend = (torch.ceil((i[None] + 1) * bin_h[:, None]) + y1[:, None]).clamp(0, height).long()
    wstart = (torch.floor(j[None] * bin_w[:, None]) + x1[:, None]).clamp(0, width).long()
    wend = (torch.ceil((j[None] + 1) * bin_w[:, None]) + x1[:, None]).clamp(0, width).long()
    # every bin spans at most gh x gw feature pixels: gather those candidates, masked, in
    # row-major order, and take their max (the first of equal maxima, as the kernel does)
    gh = max(1, int((hend - hstart).max()))
    gw = max(1, int((wend - wstart).max()))
    ys = hstart[..., None] + torch.arange(gh, device=input.device)  # (K, PH, gh)
    xs = wstart[..., None] + torch.arange(gw, device=input.device)  # (K, PW, gw)
    y_ok, x_ok = ys < hend[..., None], xs < wend[..., None]
    ys, xs = ys.clamp(max=height - 1), xs.clamp(max=width - 1)
    # (K, PH, PW, gh * gw): flat positions in the image and whether each lies inside its bin
    idx = (ys[:, :, None, :, None] * width + xs[:, None, :, None, :]).reshape(k, ph, pw, -1)
    ok = (y_ok[:, :, None, :, None] & x_ok[:, None, :, None, :]).reshape(k, ph, pw, -1)
    empty = ~ok.any(-1)  # (K, PH, PW)
    batch = rois[:, 0].long()
    neg_inf = torch.finfo(input.dtype).min
    chunk = max(1, int(2**24 // max(1, c * ph * pw * gh * gw)))  # bounded memory per gather
    pieces, order = [], []
    for b in batch.unique().tolist():  # the boxes of one image at a time
        flat = input[b].reshape(c, height * width)
        for sel in torch.where(batch == b)[0].split(chunk):
            with torch.no_grad():  # where each bin's maximum is: (C, k, PH, PW) flat positions
                vals = torch.where(ok[sel][None], flat[:, idx[sel]], neg_inf)  # (C, k, PH, PW, G)
                arg = vals.argmax(dim=-1, keepdim=True)
                pos = idx[sel][None].expand(c, -1, -1, -1, -1).gather(-1, arg)[..., 0]
            m = flat.gather(1, pos.reshape(c, -1)).reshape(pos.shape)  # gradient to the maxima
            m = torch.where(empty[sel][None], torch.zeros_like(m), m)
            pieces.append(m.permute(1, 0, 2, 3))
            order.append(sel)
    out = torch.cat(pieces)
    order = torch.cat(order)
    if bool((order[1:] < order[:-1]).any()):  # boxes not grouped by image: restore their order
        out = out[torch.argsort(order)]
    return out


def _axis_weights(coords: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear weights along one axis: sample positions ``(K, S)`` -> ``(K, S, size)``, row s
    holding (1 - l) at the low neighbour and l at the high one, with torchvision's border rules:
    a sample more than one pixel outside the map weighs nothing; one in the last pixel's band
    takes that pixel whole."""
    outside = (coords < -1.0) | (coords > size)
    c = coords.clamp(min=0)
    low = c.long()  # c >= 0, so truncation is floor
    edge = low >= size - 1
    low = torch.where(edge, size - 1, low)
    high = torch.where(edge, size - 1, low + 1)
    c = torch.where(edge, low.to(c.dtype), c)
    frac = c - low  # distance to the low neighbour
    eye = torch.eye(size, dtype=coords.dtype, device=coords.device)
    w = (1 - frac)[..., None] * eye[low] + frac[..., None] * eye[high]
    return torch.where(outside[..., None], torch.zeros_like(w), w)


def roi_align(
    input: torch.Tensor,
    boxes: torch.Tensor | list[torch.Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> torch.Tensor:
    """Average ``gh x gw`` bilinear samples in each of the ``output_size`` bins of each box ->
    ``(K, C, PH, PW)`` (Mask R-CNN's RoIAlign).

    Box coordinates are scaled but never rounded. ``aligned=True`` shifts them by half a pixel so
    that a pixel's centre sits at +0.5 (the Detectron2 correction); ``aligned=False`` is the
    original paper's, where boxes are also at least 1 x 1. ``sampling_ratio > 0`` samples that many
    points per bin side; ``-1`` adapts to the box, ceil(box height / PH) (and width), so every
    box's bins are sampled about once per feature pixel.

    Bilinear interpolation is separable, and so is the average over a bin's samples: for box k,
    ``out[k, c] = A_y[k] @ F[c] @ A_x[k]ᵀ`` with ``A_y (PH, H)`` the bin-averaged interpolation
    weights along y (``A_x`` along x). Two matrix products per image, no per-sample gathers.
    """
    rois = to_rois(boxes)
    ph, pw = _check(input, rois, output_size)
    if input.dtype in (
        torch.float16,
        torch.bfloat16,
    ):  # box geometry needs float32 (as torchvision)
        out = roi_align(
            input.float(), rois.float(), output_size, spatial_scale, sampling_ratio, aligned
        )
        return out.to(input.dtype)
    k, c = rois.shape[0], input.shape[1]
    height, width = input.shape[-2:]
    if k == 0:
        return input.new_zeros((0, c, ph, pw))
    rois = rois.detach().to(input.dtype)  # like torchvision: no gradient for the boxes
    offset = 0.5 if aligned else 0.0
    x1 = rois[:, 1] * spatial_scale - offset
    y1 = rois[:, 2] * spatial_scale - offset
    x2 = rois[:, 3] * spatial_scale - offset
    y2 = rois[:, 4] * spatial_scale - offset
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # the paper's version forces boxes to be at least one pixel
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_h, bin_w = roi_h / ph, roi_w / pw
    if sampling_ratio > 0:
        grid_h = torch.full((k,), sampling_ratio, device=input.device, dtype=torch.long)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(roi_h / ph).clamp(min=0).long()
        grid_w = torch.ceil(roi_w / pw).clamp(min=0).long()
    # bin-averaged weights A_y (K, PH, H) and A_x (K, PW, W), computed per distinct sample count
    a_y = input.new_zeros((k, ph, height))
    a_x = input.new_zeros((k, pw, width))
    for grid, start, bin_size, n_bins, size, a in (
        (grid_h, y1, bin_h, ph, height, a_y),
        (grid_w, x1, bin_w, pw, width, a_x),
    ):
        for g in grid.unique().tolist():
            if g == 0:  # an empty (or inverted) box has no sample points: its output is 0
                continue
            sel = torch.where(grid == g)[0]
            i = (torch.arange(n_bins * g, device=input.device) // g).to(input.dtype)  # bin
            j = (torch.arange(n_bins * g, device=input.device) % g).to(input.dtype)  # sample in bin
            bs = bin_size[sel, None]
            # sample centres: y = y1 + i * bin_h + (iy + 0.5) * bin_h / gh
            pos = start[sel, None] + i[None] * bs + (j[None] + 0.5) * bs / g  # (k', bins * g)
            w = _axis_weights(pos, size).reshape(len(sel), n_bins, g, size).sum(2) / g
            a[sel] = w
    batch = rois[:, 0].long()
    pieces, order = [], []
    for n in batch.unique().tolist():  # one image at a time: two matrix products
        sel = torch.where(batch == n)[0]
        t = torch.einsum("chw,kqw->kchq", input[n], a_x[sel])  # interpolate along x
        pieces.append(torch.einsum("kph,kchq->kcpq", a_y[sel], t))  # then along y
        order.append(sel)
    out = torch.cat(pieces)
    order = torch.cat(order)
    if bool((order[1:] < order[:-1]).any()):  # boxes not grouped by image: restore their order
        out = out[torch.argsort(order)]
    return out


class RoIPool(torch.nn.Module):
    """:func:`roi_pool` as a layer."""

    def __init__(self, output_size: int | tuple[int, int], spatial_scale: float = 1.0) -> None:
        super().__init__()
        self.output_size, self.spatial_scale = output_size, spatial_scale

    def forward(
        self, input: torch.Tensor, boxes: torch.Tensor | list[torch.Tensor]
    ) -> torch.Tensor:
        return roi_pool(input, boxes, self.output_size, self.spatial_scale)


class RoIAlign(torch.nn.Module):
    """:func:`roi_align` as a layer."""

    def __init__(
        self,
        output_size: int | tuple[int, int],
        spatial_scale: float = 1.0,
        sampling_ratio: int = -1,
        aligned: bool = False,
    ) -> None:
        super().__init__()
        self.output_size, self.spatial_scale = output_size, spatial_scale
        self.sampling_ratio, self.aligned = sampling_ratio, aligned

    def forward(
        self, input: torch.Tensor, boxes: torch.Tensor | list[torch.Tensor]
    ) -> torch.Tensor:
        return roi_align(
            input, boxes, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned
        )
