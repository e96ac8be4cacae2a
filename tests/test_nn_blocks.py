"""Every from-scratch block equals torch's, in values and in gradients (float64)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchlib import nn as snn


@pytest.fixture(autouse=True)
def _float64():
    """Compare in float64 so equality is tight; restore the default afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 3),
    c=st.integers(1, 4),
    o=st.integers(1, 5),
    h=st.integers(5, 12),
    w=st.integers(5, 12),
    k=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
    dilation=st.integers(1, 2),
    groups=st.sampled_from([1, 2]),
    bias=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_conv2d_equals_torch(
    n, c, o, h, w, k, stride, padding, dilation, groups, bias, seed
) -> None:
    c, o = c * groups, o * groups
    if (h + 2 * padding - dilation * (k - 1) - 1) < 0 or (
        w + 2 * padding - dilation * (k - 1) - 1
    ) < 0:
        return
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    wt = torch.randn(o, c // groups, k, k, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(o, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    args = (x, wt) + ((b,) if bias else ())

    def ours(*t):
        return snn.conv2d(t[0], t[1], t[2] if bias else None, stride, padding, dilation, groups)

    def ref(*t):
        return F.conv2d(t[0], t[1], t[2] if bias else None, stride, padding, dilation, groups)

    out, out_r = ours(*args), ref(*args)
    torch.testing.assert_close(out, out_r)
    up = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ga = torch.autograd.grad(out, args, up)
    gb = torch.autograd.grad(out_r, args, up)
    for a_, b_ in zip(ga, gb, strict=True):
        torch.testing.assert_close(a_, b_)


def test_conv2d_module_is_a_drop_in_for_nn_conv2d() -> None:
    torch.manual_seed(0)
    ours = snn.Conv2d(3, 8, 3, stride=2, padding=1)
    ref = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 9, 9)
    torch.testing.assert_close(ours(x), ref(x))
    with pytest.raises(ValueError, match="channels do not match"):
        snn.conv2d(torch.randn(1, 3, 5, 5), torch.randn(4, 2, 3, 3))
    with pytest.raises(ValueError, match="does not fit"):
        snn.conv2d(torch.randn(1, 1, 2, 2), torch.randn(1, 1, 3, 3))


@pytest.mark.parametrize(("k", "s", "p"), [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0), (3, 3, 0)])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_equals_torch(k, s, p, kind) -> None:
    x = torch.randn(2, 3, 9, 10, requires_grad=True)
    ours = snn.max_pool2d if kind == "max" else snn.avg_pool2d
    ref = F.max_pool2d if kind == "max" else F.avg_pool2d
    up = torch.randn_like(ref(x, k, s, p))
    out, out_r = ours(x, k, s, p), ref(x, k, s, p)
    torch.testing.assert_close(out, out_r)
    (g,) = torch.autograd.grad(out, x, up)
    (g_r,) = torch.autograd.grad(out_r, x, up)
    torch.testing.assert_close(g, g_r)


def test_batch_norm_train_running_stats_and_eval_equal_torch() -> None:
    torch.manual_seed(0)
    ours, ref = snn.BatchNorm2d(4), torch.nn.BatchNorm2d(4)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ours.bias.uniform_(-0.5, 0.5)
    ref.load_state_dict(ours.state_dict())
    for _ in range(3):  # training mode: batch statistics; running statistics updated
        x = (torch.randn(5, 4, 6, 6) * 3 + 1).requires_grad_()
        up = torch.randn(5, 4, 6, 6)
        out, out_r = ours(x), ref(x)
        torch.testing.assert_close(out, out_r)
        ga = torch.autograd.grad(out, [x, ours.weight, ours.bias], up)
        gb = torch.autograd.grad(out_r, [x, ref.weight, ref.bias], up)
        for a_, b_ in zip(ga, gb, strict=True):
            torch.testing.assert_close(a_, b_)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 3
    ours.eval()
    ref.eval()
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize("size", [2, 3, 5])
def test_local_response_norm_equals_torch(size: int) -> None:
    x = torch.randn(2, 7, 4, 4, requires_grad=True)
    up = torch.randn(2, 7, 4, 4)
    out = snn.local_response_norm(x, size, 1e-2, 0.75, 2.0)
    out_r = F.local_response_norm(x, size, 1e-2, 0.75, 2.0)
    torch.testing.assert_close(out, out_r)
    torch.testing.assert_close(
        torch.autograd.grad(out, x, up)[0], torch.autograd.grad(out_r, x, up)[0]
    )


def test_dropout_keeps_the_expectation_and_is_off_in_eval() -> None:
    x = torch.ones(200_000)
    g = torch.Generator().manual_seed(0)
    y = snn.dropout(x, 0.3, training=True, generator=g)
    assert abs((y == 0).double().mean().item() - 0.3) < 0.01
    assert abs(y.mean().item() - 1.0) < 0.01 and set(y.unique().tolist()) == {0.0, 1 / 0.7}
    layer = snn.Dropout(0.5).eval()
    assert torch.equal(layer(x), x)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        snn.Dropout(1.0)
