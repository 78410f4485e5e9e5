"""The inverse model (PyTorch; training only -- the converter runs the ONNX export).

A 1-D convolutional network over the log-frequency axis.  Convolution makes
it equivariant to pitch shifts (a timbre looks the same at every pitch), and
the dilations let each bin see the harmonics four octaves above it.  For
every (timbre, semitone bin) it outputs

* a logit: "a voice of this timbre has its base pitch here" -- a set of
  detections, so the voices' order never matters (unlike the seed's one
  222-float vector regressed with MSE), and
* a level: that voice's amplitude in dB below the frame peak, / 20.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class ModelConfig:
    n_bins: int = 112
    n_classes: int = 30
    width: int = 48
    dilations: tuple = (1, 2, 4, 8, 16, 32, 1)


class InverseNet(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.inp = nn.Conv1d(1, w, 5, padding=2)
        self.blocks = nn.ModuleList(
            nn.Conv1d(w, w, 3, padding=d, dilation=d) for d in config.dilations)
        self.head = nn.Conv1d(w, config.n_classes + 2, 1)

    def forward(self, x: torch.Tensor):
        """x: (batch, n_bins) -> presence logits (batch, n_bins), timbre logits
        (batch, n_classes, n_bins), levels (batch, n_bins)."""
        h = torch.relu(self.inp(x.unsqueeze(1)))
        for conv in self.blocks:
            h = h + torch.relu(conv(h))
        out = self.head(h)
        return out[:, 0], out[:, 2:], out[:, 1]

    def checkpoint(self) -> dict:
        return {"config": asdict(self.config), "state": self.state_dict()}
