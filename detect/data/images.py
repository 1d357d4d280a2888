"""Reading images and landmarks from disk: a file that cannot be read is an error naming it.

DeepfakeBench's defect 5 returns sample 0 when a load fails; here nothing is silently substituted.
"""

from __future__ import annotations

import os

import cv2
import numpy as np


class ImageReadError(OSError):
    """An image (or landmark file) that could not be read; the message names the file."""


def read_rgb(path: str) -> np.ndarray:
    """Read an image as HWC uint8 RGB, or raise ``ImageReadError`` naming the file."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        why = "does not exist" if not os.path.exists(path) else "is not a readable image"
        raise ImageReadError(f"cannot read image {path}: the file {why}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_mask(path: str | None, shape: tuple[int, int]) -> np.ndarray:
    """Read a manipulation mask as HW float32 in [0, 1]; a missing mask (None) is all zeros."""
    if path is None or (isinstance(path, float) and np.isnan(path)):
        return np.zeros(shape, np.float32)
    m = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if m is None:
        raise ImageReadError(f"cannot read mask {path}")
    if m.shape != shape:
        m = cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return m.astype(np.float32) / 255.0


def read_landmarks(path: str) -> np.ndarray:
    """Read a landmark ``.npy`` (68×2 or 81×2) as float32, or raise naming the file."""
    try:
        lm = np.load(path)
    except (OSError, ValueError) as err:
        raise ImageReadError(f"cannot read landmarks {path}: {err}") from err
    if lm.ndim != 2 or lm.shape[1] != 2 or lm.shape[0] not in (68, 81):
        raise ImageReadError(f"landmarks {path} have shape {lm.shape}; expected 68×2 or 81×2")
    return lm.astype(np.float32)
