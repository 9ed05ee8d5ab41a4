"""The one backbone: timm's contract, torchvision weights, and files of earlier versions still load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F  # noqa: N812 (the torch convention)

from mixture_ray.errors import ConfigError, MixtureRayError
from mixture_ray.models import checkpoint as ckpt
from mixture_ray.models.augment import normalise, to_float
from mixture_ray.models.backbone import Backbone
from mixture_ray.models.classifier import (
    CLASSIFIER_FORMAT,
    classifier_payload,
    from_elex,
    load_classifier,
    predict,
    prepare_tiles,
)
from mixture_ray.models.encoder import build_encoder, load_encoder


def test_timm_contract_pooled_features_and_head() -> None:
    torch.manual_seed(0)
    net = Backbone("resnet18", 3, classes=("a", "b", "c")).eval()
    x = torch.randn(2, 3, 64, 64)
    fmap = net.forward_features(x)
    assert fmap.shape == (2, net.num_features, 2, 2) == (2, 512, 2, 2)
    pooled = net.forward_head(fmap, pre_logits=True)
    torch.testing.assert_close(pooled, fmap.mean(dim=(2, 3)))
    torch.testing.assert_close(net(x), net.get_classifier()(pooled))
    net.reset_classifier(0)
    assert isinstance(net.get_classifier(), nn.Identity) and net.num_classes == 0
    torch.testing.assert_close(net(x), pooled)
    net.reset_classifier(7, head="mlp")
    assert net(x).shape == (2, 7) and isinstance(net.get_classifier(), nn.Sequential)
    with pytest.raises(ConfigError, match="2 names for a head of 3"):
        net.reset_classifier(3, classes=("a", "b"))
    with pytest.raises(ConfigError, match="vgg16"):
        Backbone("vgg16")


def test_torchvision_resnet_weights_load_as_they_are() -> None:
    torch.manual_seed(1)
    tv = torchvision.models.resnet18(weights=None, num_classes=2).eval()
    net = Backbone("resnet18", 2)
    net.load_state_dict(tv.state_dict())  # same key names
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(net.eval()(x), tv(x))


def _old_encoder_state(encoder: Backbone) -> dict[str, torch.Tensor]:
    """The same weights under the key names of the ResNetEncoder of earlier versions."""
    return {(f"head.{k[3:]}" if k.startswith("fc.") else f"backbone.{k}"): v
            for k, v in encoder.state_dict().items()}


def test_encoder_and_classifier_files_of_earlier_versions_load(tmp_path: Path) -> None:
    torch.manual_seed(2)
    encoder = build_encoder("resnet18", dim=16, mlp=True).eval()
    old = tmp_path / "old_elex.pt"
    ckpt.save({"format": "mixture_ray.resnet_encoder/1", "spec": {"arch": "resnet18", "dim": 16, "mlp": True},
               "state_dict": _old_encoder_state(encoder)}, old)
    again = load_encoder(str(old))
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(again(x), encoder(x))
    assert (again.num_classes, again.head_kind) == (16, "mlp")

    classifier = Backbone("resnet18", 2, classes=("x", "y")).eval()
    state = {(k if k.startswith("fc.") else f"backbone.{k}"): v for k, v in classifier.state_dict().items()}
    file = tmp_path / "classifier.pt"
    ckpt.save({"format": CLASSIFIER_FORMAT, "arch": "resnet18", "classes": ["x", "y"],
               "state_dict": state}, file)
    net, payload = load_classifier(file)
    assert net.classes == ("x", "y") and payload["classes"] == ["x", "y"]
    torch.testing.assert_close(net(x), classifier(x))
    assert net.input_size is None  # an old ResNet file: ImageNet normalisation at any size, as before
    tiles = torch.randint(0, 256, (2, 48, 48, 3), dtype=torch.uint8)
    torch.testing.assert_close(prepare_tiles(net, tiles), normalise(to_float(tiles)))


def test_a_timm_vit_behind_the_same_contract_saves_and_loads(tmp_path: Path) -> None:
    pytest.importorskip("timm", reason="timm is a dependency (pip install -e .)")
    torch.manual_seed(3)
    net = Backbone("timm:vit_tiny_patch16_224", 16, head="mlp").eval()
    assert net.input_size == (224, 224) and net.mean == (0.5, 0.5, 0.5) and net.num_features == 192
    x = torch.randn(2, 3, 224, 224)
    tokens = net.forward_features(x)
    assert tokens.shape == (2, 197, 192)  # the ViT's own layout
    pooled = net.forward_head(tokens, pre_logits=True)
    assert pooled.shape == (2, 192)
    torch.testing.assert_close(net(x), net.get_classifier()(pooled))
    path = tmp_path / "vit.pt"
    ckpt.save({"format": ckpt.ENCODER_FORMAT, "spec": net.spec(), "state_dict": net.state_dict()}, path)
    again = load_encoder(str(path))
    assert again.arch == "timm:vit_tiny_patch16_224" and again.is_timm
    torch.testing.assert_close(again(x), net(x))
    with pytest.raises(ConfigError, match="not a timm model name"):
        Backbone("timm:not_a_model")
    classifier = from_elex(str(path), ["a", "b"])  # finetune takes the timm encoder checkpoint
    assert classifier.arch == "timm:vit_tiny_patch16_224" and classifier.training
    head = classifier.get_classifier()
    assert isinstance(head, nn.Linear) and (head.in_features, head.out_features) == (192, 2)


def test_a_timm_classifier_file_records_arch_and_input_and_reloads(tmp_path: Path) -> None:
    pytest.importorskip("timm", reason="timm is a dependency (pip install -e .)")
    net = from_elex("random", ["a", "b", "c"], arch="timm:vit_tiny_patch16_224", seed=4).eval()
    file = tmp_path / "classifier.pt"
    ckpt.save(classifier_payload(net, image_size=0), file)
    raw = torch.load(file, map_location="cpu", weights_only=True)
    assert raw["arch"] == "timm:vit_tiny_patch16_224" and raw["input_size"] == [224, 224]
    assert raw["mean"] == [0.5, 0.5, 0.5] and raw["std"] == [0.5, 0.5, 0.5]
    again, _ = load_classifier(file)
    assert (again.input_size, again.mean, again.std) == ((224, 224), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    tiles = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    x = prepare_tiles(again, tiles)
    assert x.shape == (2, 3, 224, 224)
    by_hand = F.interpolate(tiles.permute(0, 3, 1, 2).float() / 255, size=(224, 224), mode="bilinear",
                            align_corners=False, antialias=True)
    torch.testing.assert_close(x, (by_hand - 0.5) / 0.5)
    with torch.no_grad():
        torch.testing.assert_close(again(x), net(x))
    assert predict(again, tiles.numpy()).tolist() == net(x).argmax(dim=1).tolist()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_timm_weight_file_loads_into_the_trunk(suffix: str, tmp_path: Path) -> None:
    timm = pytest.importorskip("timm", reason="timm is a dependency (pip install -e .)")
    torch.manual_seed(5)
    source = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10).eval()  # with head
    path = tmp_path / f"model{suffix}"
    if suffix == ".safetensors":
        safetensors = pytest.importorskip("safetensors.torch")
        safetensors.save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    else:
        torch.save({"state_dict": source.state_dict()}, path)
    net = from_elex(str(path), ["a", "b"], arch="timm:vit_tiny_patch16_224").eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(net.forward_head(net.forward_features(x), pre_logits=True),
                                   source.forward_head(source.forward_features(x), pre_logits=True))
    torch.save({"blocks.0.attn.qkv.weight": torch.zeros(2, 2)}, tmp_path / "other.bin")
    with pytest.raises(MixtureRayError, match="does not fit the architecture"):
        load_encoder(str(tmp_path / "other.bin"), arch="timm:vit_tiny_patch16_224")
