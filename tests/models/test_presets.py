"""Foundation-model presets: real presets are checked on the meta device; a tiny one loads and embeds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mixture_ray.errors import ConfigError, MixtureRayError
from mixture_ray.models import checkpoint as ckpt
from mixture_ray.models.backbone import Backbone, check_arch, require_resnet
from mixture_ray.models.encoder import EncoderSpec, load_encoder
from mixture_ray.models.presets import PRESETS, EncoderPreset, get_preset

timm = pytest.importorskip("timm", reason="timm is a dependency (pip install -e .)")

TINY = EncoderPreset(
    "tiny-test", "vit_tiny_patch16_224",
    {"img_size": 32, "patch_size": 16, "num_classes": 0, "reg_tokens": 2, "global_pool": "",
     "mlp_layer": "SwiGLUPacked", "act_layer": "SiLU"},
    32, (0.7, 0.6, 0.7), (0.2, 0.2, 0.2), "fp32", "cls_mean", 384, "https://example.invalid/tiny",
)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_real_preset_architecture_exists_and_builds_on_meta(name: str) -> None:
    preset = PRESETS[name]
    assert preset.timm_name in timm.list_models() and preset.url.startswith("https://huggingface.co/")
    check_arch(f"preset:{name}")
    with torch.device("meta"):  # the architecture only: no memory, no weights, no download
        net = Backbone(f"preset:{name}", 0)
    assert net.num_features == preset.width
    assert net.input_size == (224, 224) and net.mean == preset.mean and net.precision == preset.precision
    with pytest.raises(ConfigError, match="pretrain takes a torchvision ResNet"):
        require_resnet(f"preset:{name}", "pretrain")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_real_preset_refuses_without_weights(name: str, tmp_path: Path) -> None:
    preset = PRESETS[name]
    for model in ("random", str(tmp_path / "missing.bin"), str(tmp_path)):
        with pytest.raises(ConfigError, match=f"preset {name} needs its weight file.*{preset.url}"):
            load_encoder(model, arch=f"preset:{name}")


def test_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(ConfigError, match="not an encoder preset; presets: h-optimus-0, prov-gigapath"):
        get_preset("preset:uni3")
    with pytest.raises(ConfigError, match="not an encoder preset"):
        check_arch("preset:nope")


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> EncoderPreset:
    monkeypatch.setitem(PRESETS, TINY.name, TINY)
    return TINY


def _reference(trunk: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    tokens = trunk(x)  # global_pool "": every token, as the Virchow2 card reads them
    return torch.cat([tokens[:, 0], tokens[:, 1 + 2:].mean(dim=1)], dim=-1)


@pytest.mark.parametrize("suffix", [".bin", ".safetensors"])
def test_tiny_preset_loads_a_state_dict_from_disk_and_embeds(tiny: EncoderPreset, suffix: str,
                                                             tmp_path: Path) -> None:
    torch.manual_seed(0)
    trunk = tiny.create().eval()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        safetensors = pytest.importorskip("safetensors.torch")
        safetensors.save_file({k: v.contiguous() for k, v in trunk.state_dict().items()}, str(path))
    else:
        torch.save(trunk.state_dict(), path)
    net = EncoderSpec(str(path), arch="preset:tiny-test", dim=8, seed=1).load()
    assert not net.training and net.num_features == 384 and net.num_classes == 8
    assert net.input_size == (32, 32) and net.mean == (0.7, 0.6, 0.7) and net.precision == "fp32"
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        pooled = net.forward_head(net.forward_features(x), pre_logits=True)
        torch.testing.assert_close(pooled, _reference(trunk, x))
        assert net(x).shape == (3, 8)
    again = tmp_path / "elex.pt"  # a project checkpoint of the preset encoder reloads
    ckpt.save({"format": ckpt.ENCODER_FORMAT, "spec": net.spec(), "state_dict": net.state_dict()}, again)
    with torch.inference_mode():
        reloaded = load_encoder(str(again))
        torch.testing.assert_close(reloaded.forward_head(reloaded.forward_features(x), True), pooled)


def test_tiny_preset_refuses_a_file_of_another_model(tiny: EncoderPreset, tmp_path: Path) -> None:
    path = tmp_path / "pytorch_model.bin"
    torch.save({"weight": torch.zeros(2, 2)}, path)
    with pytest.raises(MixtureRayError, match=r"preset tiny-test: .* does not fit vit_tiny_patch16_224"):
        load_encoder(str(tmp_path), arch="preset:tiny-test")  # a folder holding pytorch_model.bin
    torch.save({"weight": torch.zeros(2, 2), "extra": [1, 2]}, path)
    with pytest.raises(MixtureRayError, match="no state dict of tensors"):
        load_encoder(str(path), arch="preset:tiny-test")


def test_tiny_preset_finding_classifier_keeps_its_input_through_the_classifier_file(
    tiny: EncoderPreset, tmp_path: Path
) -> None:
    from mixture_ray.models.classifier import classifier_payload, from_elex, load_classifier, prepare_tiles

    torch.manual_seed(0)
    trunk = tiny.create().eval()
    weights = tmp_path / "pytorch_model.bin"
    torch.save(trunk.state_dict(), weights)
    net = from_elex(str(tmp_path), ["a", "b"], arch="preset:tiny-test", seed=2).eval()  # folder with the file
    head = net.get_classifier()
    assert isinstance(head, torch.nn.Linear) and (head.in_features, head.out_features) == (384, 2)
    file = tmp_path / "classifier.pt"
    ckpt.save(classifier_payload(net), file)
    again, payload = load_classifier(file)
    assert payload["arch"] == "preset:tiny-test" and payload["input_size"] == [32, 32]
    assert again.mean == (0.7, 0.6, 0.7) and again.std == (0.2, 0.2, 0.2) and again.precision == "fp32"
    tiles = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    with torch.inference_mode():
        x = prepare_tiles(again, tiles)
        assert x.shape == (2, 3, 32, 32)
        torch.testing.assert_close(again(x), net(x))
        pooled = again.forward_head(again.forward_features(x), pre_logits=True)
        torch.testing.assert_close(pooled, _reference(trunk, x))

