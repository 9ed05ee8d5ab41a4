"""Layer hooks (non-negativity), safe checkpoint loading, and GradCAM against the CAM identity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from mixture_ray.errors import ConfigError
from mixture_ray.explain.gradcam import forward_with_cam
from mixture_ray.explain.model import LayerTap, build_model


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return build_model("resnet18", 2)


def test_post_relu_layer_is_non_negative(resnet: nn.Module) -> None:
    with LayerTap(resnet, "layer4") as tap:
        resnet(torch.randn(2, 3, 64, 64))
    assert tap.output is not None and tap.output.shape == (2, 512, 2, 2)
    assert bool((tap.output >= 0).all())


def test_negative_layer_is_an_error_or_clamped(resnet: nn.Module) -> None:
    x = torch.randn(2, 3, 64, 64)
    with pytest.raises(ConfigError, match="negative"), LayerTap(resnet, "layer4.1.bn2"):
        resnet(x)
    with LayerTap(resnet, "layer4.1.bn2", non_negative="relu") as tap:
        resnet(x)
    assert tap.output is not None and bool((tap.output >= 0).all())
    with pytest.raises(ConfigError, match="not found"):
        LayerTap(resnet, "layer9")


def test_checkpoint_round_trip_with_weights_only(tmp_path: Path, resnet: nn.Module) -> None:
    torch.save(resnet.state_dict(), tmp_path / "m.pt")
    again = build_model("resnet18", 2, tmp_path / "m.pt")
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(again(x), resnet.eval()(x))
    with pytest.raises(ConfigError, match="does not fit"):
        build_model("resnet18", 3, tmp_path / "m.pt")


class _GapNet(nn.Module):
    """conv -> ReLU -> global average pool -> linear: GradCAM equals CAM / (h w)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def test_gradcam_equals_cam_for_gap_linear_head() -> None:
    torch.manual_seed(0)
    net = _GapNet().eval()
    x = torch.randn(3, 3, 5, 5)
    acts, logits, cam = forward_with_cam(net, "features", x, 1)
    assert cam is not None and cam.shape == (3, 5, 5)
    expected = torch.relu(torch.einsum("c,bchw->bhw", net.fc.weight[1], acts)) / 25
    torch.testing.assert_close(cam, expected.detach())
    torch.testing.assert_close(logits, net(x))
    assert all(p.grad is None for p in net.parameters())


def test_random_weights_are_the_same_in_every_process() -> None:
    """Without a checkpoint the weights come from init_seed: every grid task builds one network."""
    state = torch.random.get_rng_state()
    first, again = build_model("resnet18", 2), build_model("resnet18", 2)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is untouched
    for (name, a), b in zip(first.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    other = build_model("resnet18", 2, init_seed=1)
    assert not torch.equal(other.state_dict()["fc.weight"], first.state_dict()["fc.weight"])
