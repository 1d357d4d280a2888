"""The temporal trace is learnable (issue 18): on videos whose every frame is a real rendering but whose
frame parameters wobble independently from frame to frame (the flicker of per-frame generation, with no
spatial artefact at all), a clip model trained briefly separates them from smooth real videos, while the
same model cut to one frame of receptive field stays near chance.

The data: the synthetic benchmark's renderer (``detect.data.synthetic.faces``) at 64 px, clips of 8
consecutive frames of a nominal 300-frame video. A real clip is the smooth track of its frame numbers; a
"flicker" clip is another video's smooth track with each frame's head position, scale, exposure and light
direction moved by a small independent draw (position 0.35 px, scale 1 %, exposure 2 %, light 0.08 rad;
the videos' own spread of position over the clip is about 0.6 px), so every single frame is a real frame
of a slightly different video. The two models share every layer; the clip model's first convolution sees
3 frames, the frame model's 1 (its video score is the mean over frames, as frame detectors score videos).
Each fake is made from a real video (as FF++'s), so a clip's identity tells nothing about its label.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from detect.data.synthetic import faces as F
from detect.data.synthetic import generator as G
from detect.data.synthetic.standins import FF_STYLE

SIZE = 64
CLIP = 8
POOL = "flicker-test"
JITTER = {"shift": 0.35, "scale": 0.01, "exposure": 0.02, "light": 0.08}


def flickered(frames: list[F.Frame], rng: np.random.Generator) -> list[F.Frame]:
    """Each frame's head position, scale, exposure and light direction moved by its own small draw."""
    out = []
    for fr in frames:
        dx, dy = rng.normal(0, JITTER["shift"], 2)
        pose = replace(
            fr.pose,
            dx=fr.pose.dx + float(dx),
            dy=fr.pose.dy + float(dy),
            scale=fr.pose.scale * float(1 + rng.normal(0, JITTER["scale"])),
        )
        turn = float(rng.normal(0, JITTER["light"]))
        c, s = np.cos(turn), np.sin(turn)
        light = np.array([c * fr.light[0] + s * fr.light[2], fr.light[1], -s * fr.light[0] + c * fr.light[2]])
        exposure = fr.exposure * float(1 + rng.normal(0, JITTER["exposure"]))
        out.append(replace(fr, pose=pose, light=light, exposure=exposure))
    return out


def clip_of(index: int, fake: bool) -> np.ndarray:
    """Video ``index``'s clip of frames 146-153 as float32 ``[T, 3, H, W]`` in [-0.5, 0.5]."""
    video = G.make_video(0, POOL, index, range(146, 146 + CLIP), SIZE, FF_STYLE)
    frames = video.frames
    if fake:
        frames = flickered(frames, G.rng_for(0, POOL, "jitter", index))
    images = [F.render(video.identity, video.scene, fr, SIZE)[0] for fr in frames]
    return np.stack(images).astype(np.float32).transpose(0, 3, 1, 2) / 255.0 - 0.5


def dataset(indices: range) -> tuple[torch.Tensor, torch.Tensor]:
    """Two clips of each video of ``indices`` (one identity each): the real one and its flickering fake,
    as FF++ makes each fake from a real video (so the identity tells nothing)."""
    clips = [clip_of(i, fake) for i in indices for fake in (False, True)]
    return torch.from_numpy(np.stack(clips)), torch.tensor([0.0, 1.0] * len(indices))


class ClipNet(nn.Module):
    """FTCN's idea in miniature: 4x4 average pooling (averages the sensor noise down), a fully temporal
    convolution (``time`` frames, spatial kernel 1; its kernels start zero-mean over time, i.e. as pure
    temporal differences, the inductive bias of a temporal-coherence detector, and are then learnt freely),
    a 3x3 spatial convolution, global average pooling and a linear layer. ``time=1``: a frame model
    scoring each frame alone (its clip score the mean over frames, as frame detectors score videos)."""

    def __init__(self, time: int) -> None:
        super().__init__()
        temporal = nn.Conv3d(3, 16, (time, 1, 1))
        if time > 1:
            with torch.no_grad():
                temporal.weight -= temporal.weight.mean(dim=2, keepdim=True)
                temporal.bias.zero_()
        self.body = nn.Sequential(
            nn.AvgPool3d((1, 4, 4)),
            temporal,
            nn.ReLU(),
            nn.Conv3d(16, 16, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.ReLU(),
        )
        self.head = nn.Linear(16, 1)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:  # [B, T, C, H, W] -> [B] logits
        x = self.body(clips.permute(0, 2, 1, 3, 4))
        return self.head(x.mean(dim=(2, 3, 4))).squeeze(1)


def train_and_score(time: int, train: tuple, test: tuple, steps: int = 250) -> float:
    """Video AUC on ``test`` of a ``ClipNet(time)`` trained ``steps`` Adam steps on ``train``."""
    torch.manual_seed(0)
    net = ClipNet(time)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, y = train
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        pick = torch.randint(len(x), (16,), generator=gen)
        loss = nn.functional.binary_cross_entropy_with_logits(net(x[pick]), y[pick])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        scores = torch.sigmoid(net(test[0])).numpy()
    return float(roc_auc_score(test[1].numpy(), scores))


@pytest.mark.e2e
def test_a_clip_model_learns_the_flicker_that_single_frames_do_not_show() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train, test = dataset(range(0, 40)), dataset(range(40, 64))  # 40 + 40 train, 24 + 24 test clips
        frame_auc = train_and_score(1, train, test)
        clip_auc = train_and_score(3, train, test)
    finally:
        torch.set_num_threads(threads)
    print(f"flicker vs smooth, video AUC: frame model {frame_auc:.3f}, clip model {clip_auc:.3f}")
    # single frames: chance within the test's noise (24 + 24 videos: standard error about 0.08)
    assert 0.3 <= frame_auc <= 0.7, frame_auc
    # clips: clearly above chance
    assert clip_auc >= 0.85, clip_auc


@pytest.mark.e2e
@pytest.mark.long
def test_ftcn_learns_the_flicker_briefly() -> None:
    """The project's FTCN (its paper network, time pooling kept, from scratch), trained 60 Adam steps on the
    same flicker-vs-smooth clips, separates the test videos (seed 0: video AUC 0.993)."""
    from detect.methods.ftcn import FTCN

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        (x, y), test = dataset(range(0, 40)), dataset(range(40, 64))
        torch.manual_seed(0)
        ftcn = FTCN(
            {}, {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 3e-4}, clip_len=CLIP, time_pool=True
        )
        opt = torch.optim.Adam(ftcn.parameters(), lr=3e-4)
        gen = torch.Generator().manual_seed(1)
        for _ in range(60):
            pick = torch.randint(len(x), (16,), generator=gen)
            loss = nn.functional.binary_cross_entropy_with_logits(ftcn.logits(x[pick] * 2), y[pick])
            opt.zero_grad()
            loss.backward()
            opt.step()
        ftcn.eval()
        with torch.no_grad():
            scores = ftcn.predict(test[0] * 2).numpy()  # [-1, 1]: FTCN's mean = std = 0.5 input
    finally:
        torch.set_num_threads(threads)
    auc = float(roc_auc_score(test[1].numpy(), scores))
    print(f"FTCN, flicker vs smooth, video AUC after 60 steps: {auc:.3f}")
    assert auc >= 0.85, auc
