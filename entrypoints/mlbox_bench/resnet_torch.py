"""ResNet-50 v1.5 in plain PyTorch, with torchvision's module and parameter names.

Why not torchvision itself: images carry PyTorch's CPU build, and PyPI's torchvision is
built against the CUDA one (it fails to import beside a CPU torch). The architecture is
torchvision's `resnet50` (v1.5: the stride is on the 3x3 convolution of a bottleneck), so
the published `resnet50-19c8e357.pth` state dict loads with strict key checking, and
25,557,032 parameters, as torchvision reports.

``quantizable=True`` gives the same network ready for eager post-training quantization
(QuantStub/DeQuantStub around it, residual add+ReLU as a quantizable FloatFunctional,
``fuse()`` for conv+bn(+relu)), as torchvision.models.quantization does; the float model
uses the same modules, which hold no parameters, so its state dict is unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

LAYERS = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (width, blocks, stride) per stage
EXPANSION = 4
NUM_CLASSES = 1000


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)


class Bottleneck(nn.Module):
    def __init__(self, inplanes: int, width: int, stride: int) -> None:
        super().__init__()
        out = width * EXPANSION
        self.conv1, self.bn1 = _conv(inplanes, width, 1), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = _conv(width, width, 3, stride), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = _conv(width, out, 1), nn.BatchNorm2d(out)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(_conv(inplanes, out, 1, stride), nn.BatchNorm2d(out))
        self.skip_add_relu = torch.ao.nn.quantized.FloatFunctional()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.relu2(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        out: torch.Tensor = self.skip_add_relu.add_relu(y, identity)
        return out

    def fuse(self) -> None:
        fuse = torch.ao.quantization.fuse_modules
        fuse(self, [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"], ["conv3", "bn3"]], inplace=True)
        if self.downsample is not None:
            fuse(self.downsample, [["0", "1"]], inplace=True)


class ResNet50(nn.Module):
    def __init__(self, *, quantizable: bool = False, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.quantizable = quantizable
        self.conv1, self.bn1, self.relu = _conv(3, 64, 7, 2), nn.BatchNorm2d(64), nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages = []
        inplanes = 64
        for width, blocks, stride in LAYERS:
            stage = []
            for block in range(blocks):
                stage.append(Bottleneck(inplanes, width, stride if block == 0 else 1))
                inplanes = width * EXPANSION
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages  # torchvision's names
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        self.quant = torch.ao.quantization.QuantStub()
        self.dequant = torch.ao.quantization.DeQuantStub()
        for module in self.modules():  # torchvision's initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quantizable:
            x = self.quant(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.fc(torch.flatten(self.avgpool(x), 1))
        if self.quantizable:
            x = self.dequant(x)
        return x

    def fuse(self) -> None:
        torch.ao.quantization.fuse_modules(self, [["conv1", "bn1", "relu"]], inplace=True)
        for module in self.modules():
            if isinstance(module, Bottleneck):
                module.fuse()


def load_state_dict_file(path: str, device: Any = "cpu") -> ResNet50:
    """The published torchvision checkpoint (`resnet50-19c8e357.pth`) in our ResNet50:
    every key must match (strict), so a different architecture is refused, not half-loaded."""
    model = ResNet50()
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()
