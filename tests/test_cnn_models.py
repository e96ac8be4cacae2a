"""Module 2 architectures: parameter counts against torchvision and the papers, shapes, and
models built from our scratch blocks equal the same models built from torch's."""

from __future__ import annotations

import pytest
import torch
import torchvision

from scratchlib import models
from scratchlib import nn as snn
from scratchlib.models.alexnet import AlexNet, AlexNetCIFAR
from scratchlib.models.googlenet import GoogLeNet
from scratchlib.models.lenet import LeNet5
from scratchlib.models.resnet import CifarResNet, resnet18, resnet50
from scratchlib.models.vgg import VGG


def count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (lambda: AlexNet(layout="torchvision"), lambda: torchvision.models.alexnet()),
        (lambda: VGG("D"), lambda: torchvision.models.vgg16()),
        (lambda: VGG("A"), lambda: torchvision.models.vgg11()),
        (lambda: VGG("E"), lambda: torchvision.models.vgg19()),
        (
            lambda: GoogLeNet(aux=False, batch_norm=True, branch5_kernel=3),
            lambda: torchvision.models.googlenet(
                weights=None, aux_logits=False, init_weights=False
            ),
        ),
        (lambda: resnet18(), lambda: torchvision.models.resnet18()),
        (lambda: resnet50(), lambda: torchvision.models.resnet50()),
    ],
    ids=["alexnet", "vgg16", "vgg11", "vgg19", "googlenet", "resnet18", "resnet50"],
)
def test_parameter_counts_equal_torchvision(ours, theirs) -> None:
    assert count(ours()) == count(theirs())


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
