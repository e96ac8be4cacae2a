"""Module 2 architectures against their references.

* AlexNet, VGG, GoogLeNet and ResNet-18/50: our weights copied into torchvision's model give the
  same outputs, in eval mode and in train mode (batch statistics, the running averages they update,
  dropout masks drawn from the same seed).
* The CIFAR ResNets, which torchvision lacks: a block and a whole network against a forward pass
  written out by hand from the paper (option-A shortcut, ReLU after the addition, no shortcut when
  plain), and the paper's stage layout.
* Parameter counts against the papers; models built from our scratch blocks equal the same models
  built from torch's.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

from scratchlib import models
from scratchlib import nn as snn
from scratchlib.models.alexnet import PAPER_LRN, AlexNet, AlexNetCIFAR, Figure1CNN
from scratchlib.models.googlenet import GoogLeNet
from scratchlib.models.lenet import LeNet5, scaled_tanh
from scratchlib.models.resnet import CifarBlock, CifarResNet, resnet18, resnet50
from scratchlib.models.vgg import VGG

tv = torchvision.models


def count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def randomise_batch_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every batch norm its own scale, shift and running statistics (fresh ones are 1, 0, 0, 1:
    in eval mode they would be nearly the identity and hide a misplaced or missing one)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0.0, 0.2, generator=g)
                m.running_mean.normal_(0.0, 0.2, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)


def torchvision_copy(ours: torch.nn.Module, build_theirs) -> torch.nn.Module:
    """torchvision's model holding a copy of every tensor of ours (weights, biases, batch-norm
    statistics). Both list their tensors in the same order, so they are matched by position; the
    names differ (``layers.3.conv1`` vs ``layer2.1.conv1``) but each pair must agree in kind
    (weight, bias, running_mean, ...) and shape. Built on the meta device: no time is spent on a
    random initialisation that is overwritten anyway, and nothing is downloaded."""
    with torch.device("meta"):
        theirs = build_theirs()
    src, dst = ours.state_dict(), theirs.state_dict()
    assert len(src) == len(dst), f"{len(src)} tensors in ours, {len(dst)} in torchvision's"
    for (k_ours, v_ours), (k_tv, v_tv) in zip(src.items(), dst.items(), strict=True):
        assert k_ours.rsplit(".", 1)[1] == k_tv.rsplit(".", 1)[1], f"{k_ours} vs {k_tv}"
        assert v_ours.shape == v_tv.shape, (
            f"{k_ours} {tuple(v_ours.shape)} vs {k_tv} {tuple(v_tv.shape)}"
        )
    theirs.load_state_dict(
        {k: v.clone() for k, v in zip(dst, src.values(), strict=True)}, assign=True
    )
    return theirs


# (ours, torchvision's, image size): the smallest sizes every stage accepts, to stay fast.
# GoogLeNet: torchvision's `transform_input` re-normalises the input for Google's ported weights
# (off unless pretrained weights are asked for; off here, our model takes the input as it is), its
# aux heads are on as in ours, and its dropout is set to the paper's 40 % (torchvision: 20 %).
REFERENCES = {
    "alexnet": (lambda: AlexNet(10, layout="torchvision"), lambda: tv.alexnet(num_classes=10), 64),
    "vgg11": (lambda: VGG("A", 10), lambda: tv.vgg11(num_classes=10), 32),
    "vgg11_bn": (lambda: VGG("A", 10, batch_norm=True), lambda: tv.vgg11_bn(num_classes=10), 32),
    "vgg16": (lambda: VGG("D", 10), lambda: tv.vgg16(num_classes=10), 32),
    "vgg16_bn": (lambda: VGG("D", 10, batch_norm=True), lambda: tv.vgg16_bn(num_classes=10), 32),
    "vgg19": (lambda: VGG("E", 10), lambda: tv.vgg19(num_classes=10), 32),
    "vgg19_bn": (lambda: VGG("E", 10, batch_norm=True), lambda: tv.vgg19_bn(num_classes=10), 32),
    "googlenet": (
        lambda: GoogLeNet(10, aux=True, batch_norm=True, branch5_kernel=3),
        lambda: tv.googlenet(
            num_classes=10, aux_logits=True, transform_input=False, init_weights=False, dropout=0.4
        ),
        64,
    ),
    "resnet18": (lambda: resnet18(num_classes=10), lambda: tv.resnet18(num_classes=10), 64),
    "resnet50": (lambda: resnet50(num_classes=10), lambda: tv.resnet50(num_classes=10), 64),
}


def as_tuple(out) -> tuple[torch.Tensor, ...]:
    """(logits, aux1, aux2) in training mode for GoogLeNet, (logits,) otherwise. torchvision's
    GoogLeNetOutputs lists the aux heads the other way round: (logits, aux_logits2, aux_logits1)."""
    if isinstance(out, tv.GoogLeNetOutputs):
        return out.logits, out.aux_logits1, out.aux_logits2
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("name", REFERENCES)
def test_same_weights_give_torchvisions_outputs_in_eval_and_train_mode(name: str) -> None:
    build_ours, build_theirs, size = REFERENCES[name]
    torch.manual_seed(0)
    ours = build_ours().double()  # float64: any difference is the architecture's, not rounding
    randomise_batch_norms(ours)
    theirs = torchvision_copy(ours, build_theirs)
    x = torch.randn(2, 3, size, size, dtype=torch.float64)

    with torch.no_grad():
        got, want = ours.eval()(x), theirs.eval()(x)
    assert got.shape == want.shape == (2, 10)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12, msg=lambda m: f"eval mode: {m}")

    # train mode: batch statistics, dropout masks from the same seed, running averages updated
    ours.train(), theirs.train()
    with torch.no_grad():
        torch.manual_seed(1)
        got = as_tuple(ours(x))
        torch.manual_seed(1)
        want = as_tuple(theirs(x))
    assert len(got) == len(want) == (3 if name == "googlenet" else 1)
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        torch.testing.assert_close(
            a, b, rtol=1e-9, atol=1e-12, msg=lambda m, i=i: f"train mode, output {i}: {m}"
        )
    for (k, a), b in zip(ours.named_buffers(), theirs.buffers(), strict=True):
        torch.testing.assert_close(
            a, b, rtol=1e-9, atol=1e-12, msg=lambda m, k=k: f"{k} after a training forward: {m}"
        )


def batch_norm_by_hand(x: torch.Tensor, bn: torch.nn.BatchNorm2d, training: bool) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) * gamma + beta, with the batch's statistics when training."""
    if training:
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
    else:
        mean, var = bn.running_mean, bn.running_var
    shape = (1, -1, 1, 1)
    x_hat = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + bn.eps)
    return x_hat * bn.weight.view(shape) + bn.bias.view(shape)


def cifar_block_by_hand(block, x, c_out: int, stride: int, plain: bool, training: bool):
    """The paper's block, y = relu(F(x) + shortcut(x)) with F = BN(conv(relu(BN(conv x)))), and
    option A: the shortcut takes every stride-th pixel and pads the new channels with zeros (half
    before, half after). A plain block has no shortcut: y = relu(F(x))."""
    h = F.relu(
        batch_norm_by_hand(
            F.conv2d(x, block.conv1.weight, stride=stride, padding=1), block.bn1, training
        )
    )
    f = batch_norm_by_hand(F.conv2d(h, block.conv2.weight, padding=1), block.bn2, training)
    if plain:
        return F.relu(f)
    s = x[:, :, ::stride, ::stride]
    pad = c_out - x.shape[1]
    zeros = lambda c: s.new_zeros(s.shape[0], c, *s.shape[2:])  # noqa: E731
    return F.relu(f + torch.cat([zeros(pad // 2), s, zeros(pad - pad // 2)], 1))


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize(
    ("c_in", "c_out", "stride", "plain"),
    [(16, 16, 1, False), (16, 32, 2, False), (16, 16, 1, True), (32, 64, 2, True)],
    ids=["identity", "downsample", "plain", "plain-downsample"],
)
def test_cifar_block_equals_the_papers_block_written_by_hand(
    c_in, c_out, stride, plain, training
) -> None:
    torch.manual_seed(0)
    block = CifarBlock(c_in, c_out, stride, plain, torch.nn.Conv2d).double()
    randomise_batch_norms(block)
    block.train(training)
    x = torch.randn(4, c_in, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        want = cifar_block_by_hand(block, x, c_out, stride, plain, training)
        got = block(x)
    assert got.shape == (4, c_out, 8 // stride, 8 // stride)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_option_a_shortcut_subsamples_and_zero_pads_new_channels() -> None:
    block = CifarBlock(16, 32, 2, False, torch.nn.Conv2d)
    x = torch.randn(2, 16, 8, 8)
    s = block.shortcut(x)
    assert s.shape == (2, 32, 4, 4)
    assert torch.equal(s[:, 8:24], x[:, :, ::2, ::2])  # identity on the old channels
    assert not s[:, :8].any() and not s[:, 24:].any()  # zeros on the new ones: no parameters
    assert torch.equal(CifarBlock(16, 16, 1, False, torch.nn.Conv2d).shortcut(x), x)


def test_plain_block_has_no_shortcut() -> None:
    """With F(x) = 0 (the last batch norm's scale and shift zeroed) a residual block passes
    relu(x) through and a plain block gives zeros."""
    x = torch.randn(2, 16, 8, 8)
    for plain in (False, True):
        block = CifarBlock(16, 16, 1, plain, torch.nn.Conv2d).eval()
        with torch.no_grad():
            block.bn2.weight.zero_(), block.bn2.bias.zero_()
            y = block(x)
        want = torch.zeros_like(x) if plain else F.relu(x)
        torch.testing.assert_close(
            y, want, rtol=0, atol=0, msg=lambda m, p=plain: f"plain={p}: {m}"
        )


@pytest.mark.parametrize("depth", [20, 56])
def test_cifar_resnet_has_the_papers_stages(depth: int) -> None:
    """Section 4.2: a 3x3 conv, then 3 stages of n = (depth - 2) / 6 blocks with 16, 32, 64 filters
    on 32, 16, 8 pixel maps (the first block of stages 2 and 3 has stride 2), pooling and one FC."""
    n = (depth - 2) // 6
    m = CifarResNet(depth)
    want = (
        [(16, 16, 1)] * n
        + [(16, 32, 2)]
        + [(32, 32, 1)] * (n - 1)
        + [(32, 64, 2)]
        + [(64, 64, 1)] * (n - 1)
    )
    got = [(b.conv1.in_channels, b.conv2.out_channels, b.conv1.stride[0]) for b in m.blocks]
    assert got == want
    weighted = [mod for mod in m.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(weighted) == depth  # the "depth" counts the conv and fc layers: 6n + 2


@pytest.mark.parametrize("plain", [False, True], ids=["residual", "plain"])
def test_cifar_resnet_forward_equals_the_network_written_by_hand(plain: bool) -> None:
    torch.manual_seed(0)
    m = CifarResNet(20, plain=plain).double().eval()
    randomise_batch_norms(m)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        h = F.relu(batch_norm_by_hand(F.conv2d(x, m.conv1.weight, padding=1), m.bn1, False))
        for b in m.blocks:
            h = cifar_block_by_hand(b, h, b.conv2.out_channels, b.conv1.stride[0], plain, False)
        want = F.linear(h.mean((2, 3)), m.fc.weight, m.fc.bias)
        torch.testing.assert_close(m(x), want, rtol=1e-9, atol=1e-12)


def test_parameter_counts_match_the_papers() -> None:
    assert count(CifarResNet(20)) == pytest.approx(0.27e6, rel=0.02)  # Table 6: 0.27M
    assert count(CifarResNet(56)) == pytest.approx(0.85e6, rel=0.02)  # 0.85M
    assert count(CifarResNet(110)) == pytest.approx(1.7e6, rel=0.03)  # 1.7M
    assert count(CifarResNet(20, plain=True)) == count(CifarResNet(20)), (
        "option A shortcuts add no parameters"
    )
    assert (
        LeNet5().effective_parameters() == 60850
    )  # the paper's layer-by-layer count (RBF output as linear)
    assert count(AlexNet()) == pytest.approx(60e6, rel=0.03)  # "60 million parameters"
    assert count(VGG("C")) == pytest.approx(134e6, rel=0.01)  # Table 2
    assert count(GoogLeNet(aux=False)) == pytest.approx(6.8e6, rel=0.05)


@pytest.mark.parametrize(
    ("build", "shape"),
    [
        (lambda: LeNet5(), (2, 1, 28, 28)),
        (lambda: AlexNetCIFAR(), (2, 3, 32, 32)),
        (lambda: VGG("A", num_classes=10, image_size=32, batch_norm=True), (2, 3, 32, 32)),
        (lambda: GoogLeNet(num_classes=10, small_input=True, batch_norm=True), (2, 3, 32, 32)),
        (lambda: CifarResNet(20), (2, 3, 32, 32)),
        (lambda: CifarResNet(20, plain=True), (2, 3, 32, 32)),
    ],
    ids=["lenet5", "alexnet-cifar", "vgg-a-cifar", "googlenet-cifar", "resnet20", "plain20"],
)
def test_small_image_models_give_class_scores(build, shape) -> None:
    m = build().eval()
    assert m(torch.randn(*shape)).shape == (shape[0], 10)


def test_googlenet_aux_heads_only_in_training_and_plug_into_the_trainer() -> None:
    m = GoogLeNet(num_classes=10, small_input=True, batch_norm=True).train()
    logits, a1, a2 = m(torch.randn(2, 3, 32, 32))
    assert logits.shape == a1.shape == a2.shape == (2, 10)
    out = m.training_step((torch.randn(2, 3, 32, 32), torch.tensor([1, 2])))
    assert out["loss"].requires_grad and out["count"] == 2
    assert m.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    "build",
    [
        lambda conv: LeNet5(conv=conv),
        lambda conv: CifarResNet(20, conv=conv),
        lambda conv: GoogLeNet(10, aux=False, small_input=True, batch_norm=True, conv=conv),
    ],
    ids=["lenet5", "resnet20", "googlenet"],
)
def test_model_from_scratch_convs_equals_model_from_torch_convs(build) -> None:
    torch.manual_seed(0)
    ref = build(torch.nn.Conv2d).eval()
    ours = build(snn.Conv2d).eval()
    ours.load_state_dict(ref.state_dict())  # same parameter names: a true drop-in
    x = torch.randn(2, *((1, 28, 28) if isinstance(ref, LeNet5) else (3, 32, 32)))
    torch.testing.assert_close(ours(x), ref(x), atol=1e-4, rtol=1e-4)


def test_bad_configurations_name_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(21)
    with pytest.raises(ValueError, match="one of"):
        VGG("F")
    with pytest.raises(ValueError, match="layout"):
        AlexNet(layout="three-gpus")


def test_module2_models_are_registered_with_model_info() -> None:
    names = models.names()
    for n in ("lenet5", "alexnet", "alexnetcifar", "vgg", "googlenet", "cifarresnet", "resnet"):
        assert n in names
        assert models.info(n).module == "02-CNN-Revolution"


# --- what the Module 2 notebooks rely on ---------------------------------------------------------------


def test_lenet_feature_maps_are_the_forward_pass_with_the_papers_squashing() -> None:
    torch.manual_seed(0)
    m = LeNet5().eval()
    x = torch.randn(3, 1, 28, 28)
    maps = m.feature_maps(x)
    assert [tuple(maps[k].shape[1:]) for k in ("C1", "S2", "C3", "S4", "C5", "F6")] == [
        (6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (120, 1, 1), (84,),
    ]  # fmt: skip
    torch.testing.assert_close(maps["output"], m(x))
    c1 = F.conv2d(F.pad(x, (2, 2, 2, 2)), m.c1.weight, m.c1.bias)
    torch.testing.assert_close(maps["C1"], 1.7159 * torch.tanh(2 * c1 / 3))  # not torch.tanh
    assert scaled_tanh(torch.tensor(1.0)).item() == pytest.approx(1.0, abs=2e-4)  # f(1) ≈ 1


def test_alexnet_lrn_is_the_papers_formula() -> None:
    """The paper: b = a / (k + α Σ a²)^β, α = 1e-4; PyTorch's form divides α by n."""
    x = torch.randn(2, 12, 5, 5, dtype=torch.float64) * 30
    sq = F.pad(x.pow(2), (0, 0, 0, 0, 2, 2))  # the channel axis, n = 5 neighbours
    window = sum(sq[:, i : i + 12] for i in range(5))
    paper = x / (2.0 + 1e-4 * window).pow(0.75)
    torch.testing.assert_close(snn.LocalResponseNorm(**PAPER_LRN)(x), paper)
    lrn = [mod for mod in AlexNet().features if isinstance(mod, snn.LocalResponseNorm)]
    assert len(lrn) == 2 and all(mod.alpha / mod.size == 1e-4 for mod in lrn)


@pytest.mark.parametrize("build", [
    lambda act, init: AlexNetCIFAR(activation=act, init=init, width=0.25, dropout=0.0),
    lambda act, init: Figure1CNN(act, init=init),
], ids=["alexnet-cifar", "figure1"])  # fmt: skip
def test_he_init_keeps_the_signal_alive_through_the_stack(build) -> None:
    """With PyTorch's default initialisation a deep ReLU stack's activations shrink layer by
    layer; with init="he" (variance gain² / fan-in) they keep their scale, for ReLU and tanh."""
    x = torch.randn(64, 3, 32, 32)
    torch.manual_seed(0)
    with torch.no_grad():
        default = build("relu", "torch").eval()(x).std().item()
        he = build("relu", "he").eval()(x).std().item()
        he_tanh = build("tanh", "he").eval()(x).std().item()
    assert he > 5 * default and 0.2 < he < 5 and 0.2 < he_tanh < 5
    m = build("relu", "he")
    assert all(b.abs().sum() == 0 for n, b in m.named_parameters() if n.endswith("bias"))
    with pytest.raises(ValueError, match="init must be 'torch'"):
        build("relu", "xavier")


def test_cifar_resnet_width_scales_the_filters_and_keeps_the_layout() -> None:
    half = CifarResNet(20, width=0.5)
    assert [half.conv1.out_channels, half.blocks[-1].conv2.out_channels] == [8, 32]
    assert len(half.blocks) == len(CifarResNet(20).blocks) == 9
    assert half.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert count(CifarResNet(20, width=1.0)) == 269_722  # the default is the paper's network
    with pytest.raises(ValueError, match="width must be > 0"):
        CifarResNet(20, width=0)


def test_googlenet_stem_stride_halves_the_maps_the_inception_modules_see() -> None:
    seen = {}
    for stride in (1, 2):
        m = GoogLeNet(
            num_classes=10, small_input=True, batch_norm=True, width=0.125, stem_stride=stride
        )
        seen[stride] = m.stem(torch.zeros(1, 3, 32, 32)).shape[-1]
        assert m.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert seen == {1: 32, 2: 16}
    with pytest.raises(ValueError, match="stem_stride must be 1 or 2"):
        GoogLeNet(small_input=True, stem_stride=3)


def test_vgg_b_shallow_is_the_papers_5x5_control_for_depth() -> None:
    """Section 4.1: B with each pair of 3x3 layers replaced by one 5x5 (same receptive field)."""
    deep, shallow = VGG("B", 10, 32, batch_norm=True), VGG("B-shallow", 10, 32, batch_norm=True)
    convs = lambda m: [c for c in m.features if isinstance(c, torch.nn.Conv2d)]  # noqa: E731
    assert [c.kernel_size for c in convs(shallow)] == [(5, 5)] * 5 and len(convs(deep)) == 10
    assert [c.out_channels for c in convs(deep)][1::2] == [c.out_channels for c in convs(shallow)]
    assert count(shallow.features) > count(deep.features)  # 25 C² > 18 C² weights per pair
    assert (shallow.depth, deep.depth) == (8, 13)
