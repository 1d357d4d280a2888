"""The JPEG round trip (encode, then decode) with OpenCV: the data layer's, because the datasets (DPL's
multi-quality views), the quality scores (JPEG priors) and the test-time perturbations all use it."""

from __future__ import annotations

import cv2
import numpy as np


def jpeg_compress(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode ``image`` (HWC uint8 RGB) as JPEG at ``quality`` with OpenCV (which works in BGR)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"the JPEG round trip takes HWC uint8 RGB images, got {image.dtype} {image.shape}")
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"OpenCV failed to JPEG-encode an image of shape {image.shape}")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
