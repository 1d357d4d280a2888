"""Procedural face rendering: identities, scenes (one per video), per-frame pose/expression/light, render.

Everything is vectorised numpy + OpenCV drawing. An identity's skin and hair are painted once into a
canonical texture atlas that follows the head (an affine of the pose); eyes, brows, nose and lips are drawn
from the projected landmarks, so the 81 landmarks sit exactly on the rendered features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from detect.data.synthetic import landmarks as L
from detect.data.synthetic import temporal as T

ATLAS = 160
GRAIN_MARGIN = 48
ATLAS_U = (-1.8, 1.8)
ATLAS_V = (-2.0, 1.6)

SKIN_LIGHT = np.array([0.93, 0.78, 0.68])
SKIN_DARK = np.array([0.36, 0.22, 0.15])
HAIR_COLOURS = np.array(
    [
        [0.07, 0.06, 0.05],
        [0.22, 0.13, 0.07],
        [0.38, 0.24, 0.12],
        [0.72, 0.58, 0.34],
        [0.52, 0.2, 0.08],
        [0.6, 0.59, 0.57],
    ]
)
EYE_COLOURS = np.array([[0.3, 0.18, 0.08], [0.15, 0.1, 0.06], [0.25, 0.42, 0.6], [0.3, 0.45, 0.3]])


@dataclass(frozen=True)
class Style:
    """How a dataset's videos look: the knobs a stand-in shifts (see ``standins.py``)."""

    tone_range: tuple[float, float] = (0.0, 1.0)
    geometry_spread: float = 1.0
    background: str = "indoor"
    noise: float = 0.012
    blur: float = 0.5
    rescale: float = 1.0
    scale_range: tuple[float, float] = (80.0, 92.0)
    yaw_range: float = 0.35
    light_contrast: float = 0.55
    tint: float = 0.04
    texture: float = 1.0


@dataclass
class Identity:
    """One person: face shape and appearance, with a cached canonical texture atlas."""

    geometry: L.Geometry
    skin: np.ndarray
    lips: np.ndarray
    hair: np.ndarray
    eyes: np.ndarray
    hairline: float
    hair_length: float
    texture_seed: int
    texture: float = 1.0
    freckles: float = 0.0
    _atlas: dict = field(default_factory=dict, repr=False)

    def atlas(self) -> dict[str, np.ndarray]:
        """Canonical skin/hair albedo and hair alpha layers (``ATLAS``×``ATLAS``), computed once."""
        if not self._atlas:
            self._atlas.update(_paint_atlas(self))
        return self._atlas


@dataclass(frozen=True)
class Scene:
    """One video's camera and surroundings (background and sensor grain are drawn lazily from seeds)."""

    size: int
    background_kind: str
    background_seed: int
    grain_seed: int
    shirt: np.ndarray
    light_az: float
    light_el: float
    light_contrast: float
    tint: np.ndarray
    noise: float
    blur: float
    rescale: float
    motion: np.ndarray

    @property
    def background(self) -> np.ndarray:
        """The background image (float32 RGB in [0, 1], ``size``×``size``)."""
        return _background(self.background_seed, self.size, self.background_kind)

    @property
    def grain(self) -> np.ndarray:
        """Unit sensor noise, a little larger than the frame (frames take shifted windows)."""
        return _grain(self.grain_seed, self.size)


@dataclass(frozen=True)
class Frame:
    """One frame's pose, expression, light direction, gaze and where its sensor noise comes from."""

    pose: L.Pose
    expression: L.Expression
    light: np.ndarray
    gaze: tuple[float, float]
    exposure: float
    noise_offset: tuple[int, int]


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
    """Zero-mean unit-variance noise smooth at ``cells`` (rows, cols) resolution, resized to ``shape``."""
    small = rng.standard_normal(cells).astype(np.float32)
    big = cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return (big - big.mean()) / (big.std() + 1e-6)


def sample_identity(rng: np.random.Generator, style: Style = Style()) -> Identity:
    """Draw one identity: shape, skin tone, hair, eyes, textures."""
    tone = rng.uniform(*style.tone_range)
    skin = (1 - tone) * SKIN_LIGHT + tone * SKIN_DARK + rng.normal(0, 0.025, 3)
    skin = np.clip(skin, 0.08, 0.98)
    lips = np.clip(skin * np.array([0.92, 0.62, 0.62]) + rng.normal(0, 0.02, 3), 0.05, 1)
    hair = np.clip(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.8, 1.2), 0.02, 0.95)
    return Identity(
        geometry=L.sample_geometry(rng, style.geometry_spread),
        skin=skin,
        lips=lips,
        hair=hair,
        eyes=EYE_COLOURS[rng.integers(len(EYE_COLOURS))] * rng.uniform(0.8, 1.2),
        hairline=float(rng.uniform(-1.1, -0.75)),
        hair_length=float(rng.choice([-0.2, 0.3, 0.9, 1.5])),
        texture_seed=int(rng.integers(2**31)),
        texture=style.texture * float(rng.uniform(0.7, 1.3)),
        freckles=float(rng.uniform(0, 1) < 0.25) * float(rng.uniform(0.3, 1.0)),
    )


@lru_cache(maxsize=4)
def _atlas_grid() -> tuple[np.ndarray, np.ndarray]:
    u = np.linspace(*ATLAS_U, ATLAS, dtype=np.float32)
    v = np.linspace(*ATLAS_V, ATLAS, dtype=np.float32)
    return np.meshgrid(u, v)


def _paint_atlas(ident: Identity) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(ident.texture_seed)
    uu, vv = _atlas_grid()
    g = ident.geometry
    shape = (ATLAS, ATLAS)
    tex = 0.5 * smooth_noise(rng, shape, (10, 10)) + 0.35 * smooth_noise(rng, shape, (40, 40))
    tex += 0.3 * rng.standard_normal(shape).astype(np.float32)
    skin = ident.skin[None, None, :] * (1 + 0.045 * ident.texture * tex[..., None])
    # cheeks redder, jaw and temples slightly darker
    cheek = np.exp(-(((np.abs(uu) - 0.5) / 0.22) ** 2 + ((vv - 0.2) / 0.2) ** 2))
    skin = skin * (1 + 0.08 * cheek[..., None] * np.array([0.6, -0.5, -0.5]))
    skin = skin * (1 - 0.08 * np.clip(np.abs(uu) - 0.6, 0, 1)[..., None])
    if ident.freckles > 0:
        dots = (rng.random(shape) < 0.02 * ident.freckles).astype(np.float32)
        dots = cv2.GaussianBlur(dots, (0, 0), 0.7)
        near_nose = np.exp(-((uu / 0.55) ** 2 + ((vv - 0.05) / 0.25) ** 2))
        skin = skin * (1 - 0.8 * (dots * near_nose)[..., None] * np.array([0.3, 0.45, 0.55]))
    # hair: strands run along v
    strands = smooth_noise(rng, shape, (8, ATLAS // 2)) * 0.6 + smooth_noise(rng, shape, (20, 20)) * 0.4
    hair = ident.hair[None, None, :] * (1 + 0.28 * strands[..., None])
    edge = 0.05 * smooth_noise(rng, shape, (1, 24))[0]  # ragged hairline
    hairline = ident.hairline + 0.28 * uu**2 + edge[None, :]
    fringe = np.clip((hairline - vv) / 0.05, 0, 1)
    cap = ((uu / (1.13 * g.width)) ** 2 + ((vv + 0.35) / 1.12) ** 2) < 1.0
    sides = (np.abs(uu) < 1.22 * g.width) & (vv < ident.hair_length) & (vv > -0.6)
    back = cv2.GaussianBlur((cap | sides).astype(np.float32), (0, 0), 1.0)
    return {  # RGB + alpha: skin with the fringe's alpha, hair with the back hair's alpha
        "skin": np.dstack([np.clip(skin, 0, 1), fringe]).astype(np.float32),
        "hair": np.dstack([np.clip(hair, 0, 1), back]).astype(np.float32),
    }


def sample_scene(rng: np.random.Generator, size: int, style: Style = Style()) -> Scene:
    """Draw one video's background, clothes, lighting, camera noise and motion."""
    az = float(rng.uniform(-1.0, 1.0))
    return Scene(
        size=size,
        background_kind=style.background,
        background_seed=int(rng.integers(2**31)),
        grain_seed=int(rng.integers(2**31)),
        shirt=np.clip(rng.uniform(0.05, 0.9, 3), 0, 1),
        light_az=az,
        light_el=float(rng.uniform(0.1, 0.6)),
        light_contrast=style.light_contrast * float(rng.uniform(0.7, 1.3)),
        tint=1 + rng.normal(0, style.tint, 3),
        noise=style.noise * float(rng.uniform(0.6, 1.4)),
        blur=style.blur * float(rng.uniform(0.6, 1.4)),
        rescale=style.rescale,
        motion=rng.uniform(0, 2 * np.pi, 8),
    )


@lru_cache(maxsize=4)
def _grain(seed: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grain = rng.standard_normal((size + GRAIN_MARGIN, size + GRAIN_MARGIN, 3), dtype=np.float32)
    grain.flags.writeable = False
    return grain


@lru_cache(maxsize=4)
def _background(seed: int, size: int, kind: str) -> np.ndarray:
    """A smooth room-like, studio, outdoor or cluttered background (float32 RGB in [0, 1])."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.15, 0.85, 3)
    other = np.clip(base + rng.normal(0, 0.2, 3), 0, 1)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    angle = rng.uniform(0, np.pi)
    xx, yy = np.meshgrid(ramp, ramp)
    t = np.cos(angle) * xx + np.sin(angle) * yy
    t = (t - t.min()) / (np.ptp(t) + 1e-6)
    bg = base * (1 - t[..., None]) + other * t[..., None]
    low = np.stack([smooth_noise(rng, (size, size), (4, 4)) for _ in range(3)], -1)
    amp = {"studio": 0.02, "indoor": 0.06, "outdoor": 0.1, "clutter": 0.08}.get(kind, 0.06)
    bg = bg + amp * low
    n_rect = {"studio": 0, "indoor": 3, "outdoor": 1, "clutter": 9}.get(kind, 3)
    canvas = bg.astype(np.float32).copy()
    for _ in range(n_rect):
        x0, y0 = rng.integers(0, size, 2)
        w, h = rng.integers(size // 10, size // 2, 2)
        col = tuple(float(c) for c in np.clip(rng.uniform(0.1, 0.9, 3), 0, 1))
        cv2.rectangle(canvas, (int(x0), int(y0)), (int(x0 + w), int(y0 + h)), col, -1)
    if kind == "outdoor":
        leaves = np.stack([smooth_noise(rng, (size, size), (size // 8, size // 8)) for _ in range(3)], -1)
        canvas = canvas + 0.07 * leaves
    canvas = cv2.GaussianBlur(canvas, (0, 0), {"clutter": 1.5, "outdoor": 1.0}.get(kind, 2.5))
    out = np.clip(canvas, 0, 1).astype(np.float32)
    out.flags.writeable = False
    return out


def sample_frames(
    rng: np.random.Generator, scene: Scene, frames: Sequence[int], size: int, style: Style = Style()
) -> list[Frame]:
    """The frames numbered ``frames`` (of a nominal ``CLIP_FRAMES``-frame clip): every parameter a smooth
    function of the frame number, drawn once per video (:mod:`temporal`), so consecutive frames differ a
    little and distant ones as much as independent draws; only the sensor noise is new in every frame."""
    nums = [int(f) for f in frames]
    base_scale = float(rng.uniform(*style.scale_range)) * size / 256
    yaw0 = float(rng.uniform(-0.5, 0.5) * style.yaw_range)
    m = scene.motion
    t = np.asarray(nums, np.float64) / (T.CLIP_FRAMES - 1)
    yaw = yaw0 + style.yaw_range * 0.7 * np.sin(2 * np.pi * 0.8 * t + m[0])
    pitch = 0.12 * np.sin(2 * np.pi * 0.6 * t + m[1])
    roll = 0.1 * np.sin(2 * np.pi * 0.5 * t + m[2])
    wobble = 0.01 * T.smooth_track(rng, nums, (30, 150))
    scale = base_scale * (1 + 0.03 * np.sin(2 * np.pi * t + m[3]) + wobble)
    shift = 2.5 * base_scale / 90
    dx = shift * T.smooth_track(rng, nums, (25, 150))
    dy = shift * T.smooth_track(rng, nums, (25, 150))
    talk = 0.15 * T.smooth_track(rng, nums, (12, 60))
    mouth = np.clip(0.5 + 0.6 * np.sin(2 * np.pi * 1.7 * t + m[4]) + talk, 0, 1)
    smile = np.clip(0.4 + 0.5 * np.sin(2 * np.pi * 0.9 * t + m[5]), 0, 1)
    blink = T.blink_track(rng, nums)
    brow = np.clip(0.3 + 0.3 * T.smooth_track(rng, nums, (30, 200)), 0, 1)
    gaze_x = 0.25 * T.smooth_track(rng, nums, (20, 100))
    gaze_y = 0.15 * T.smooth_track(rng, nums, (20, 100))
    exposure = 1 + 0.03 * T.smooth_track(rng, nums, (50, 300))
    az = scene.light_az + 0.25 * np.sin(2 * np.pi * t + m[6])
    el = scene.light_el
    noise_seed = int(rng.integers(2**31))
    out = []
    for k, f in enumerate(nums):
        light = np.array([np.sin(az[k]) * np.cos(el), -np.sin(el), np.cos(az[k]) * np.cos(el)])
        grain = np.random.default_rng([noise_seed, f]).integers(GRAIN_MARGIN, size=2)
        out.append(
            Frame(
                pose=L.Pose(
                    yaw=float(yaw[k]),
                    pitch=float(pitch[k]),
                    roll=float(roll[k]),
                    scale=float(scale[k]),
                    dx=float(dx[k]),
                    dy=float(dy[k]),
                ),
                expression=L.Expression(
                    open=float(mouth[k]), smile=float(smile[k]), blink=float(blink[k]), brow=float(brow[k])
                ),
                light=light / np.linalg.norm(light),
                gaze=(float(gaze_x[k]), float(gaze_y[k])),
                exposure=float(exposure[k]),
                noise_offset=(int(grain[0]), int(grain[1])),
            )
        )
    return out


@lru_cache(maxsize=4)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = np.arange(size, dtype=np.float32)
    return np.meshgrid(c, c)


Roi = tuple[slice, slice]


def roi_of(pts: np.ndarray, margin: float, size: int) -> Roi:
    """Bounding rows/cols of ``pts`` grown by ``margin`` pixels, clipped to the image."""
    x0, y0 = np.floor(pts.min(0) - margin).astype(int)
    x1, y1 = np.ceil(pts.max(0) + margin).astype(int) + 1
    y0, x0 = min(max(0, y0), size), min(max(0, x0), size)
    return slice(y0, max(y0, min(size, y1))), slice(x0, max(x0, min(size, x1)))


def _shape(roi: Roi) -> tuple[int, int]:
    return roi[0].stop - roi[0].start, roi[1].stop - roi[1].start


def _offset(pts: np.ndarray, roi: Roi) -> np.ndarray:
    """Points in 1/16 px fixed point relative to the ROI corner (for cv2 drawing with ``shift=4``)."""
    return np.round((np.asarray(pts, np.float64) - [roi[1].start, roi[0].start]) * 16).astype(np.int32)


def poly_alpha(
    size: int, pts: np.ndarray, blur: float = 0.0, roi: Roi | None = None
) -> tuple[np.ndarray, Roi]:
    """Anti-aliased filled polygon as a float alpha map over its ROI."""
    roi = roi or roi_of(pts, 3 * blur + 2, size)
    m = np.zeros(_shape(roi), np.uint8)
    if m.size:
        cv2.fillPoly(m, [_offset(pts, roi)], 255, cv2.LINE_AA, shift=4)
    a = m.astype(np.float32) * np.float32(1 / 255)
    if blur > 0 and a.size:
        a = cv2.GaussianBlur(a, (0, 0), blur)
    return a, roi


def _lines(
    size: int, curves: list[np.ndarray], thick: int, blur: float, margin: float
) -> tuple[np.ndarray, Roi]:
    roi = roi_of(np.concatenate(curves), margin + thick + 3 * blur, size)
    m = np.zeros(_shape(roi), np.float32)
    if m.size:
        for c in curves:
            cv2.polylines(m, [_offset(c, roi)], False, 1.0, thick, cv2.LINE_AA, shift=4)
        if blur > 0:
            m = cv2.GaussianBlur(m, (0, 0), blur)
    return m, roi


def _over(
    img: np.ndarray,
    colour: np.ndarray | tuple,
    alpha: np.ndarray,
    roi: Roi | None = None,
    shade: np.ndarray | None = None,
) -> None:
    """Alpha-composite ``colour`` (an RGB triple or a full-size image, times ``shade``) over ``img``."""
    if roi is None:
        roi = (slice(0, img.shape[0]), slice(0, img.shape[1]))
    if alpha.size == 0:
        return
    a = alpha[..., None]
    part = img[roi]
    col = colour[roi] if np.ndim(colour) == 3 else np.asarray(colour, np.float32)
    if shade is not None:
        col = col * shade[roi]
    part += (col - part) * a


def _scale(img: np.ndarray, factor: float, alpha: np.ndarray, roi: Roi) -> None:
    """Darken (factor < 1) or brighten ``img`` by ``factor`` where ``alpha`` is 1, in place."""
    if alpha.size:
        img[roi] *= 1 + np.float32(factor - 1) * alpha[..., None]


def _shading(ident: Identity, scene: Scene, fr: Frame, size: int) -> np.ndarray:
    """Lambert + ambient + a little specular on an ellipsoid head (per pixel)."""
    aff = L.canonical_to_image_affine(fr.pose, size)
    inv = cv2.invertAffineTransform(aff).astype(np.float32)
    xx, yy = _pixel_grid(size)
    g = ident.geometry
    u = inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2]
    v = inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]
    nx = u * np.float32(1 / (1.05 * g.width))
    ny = (v - np.float32(0.05)) * np.float32(1 / 1.25)
    nz = np.sqrt(1 - np.minimum(nx * nx + ny * ny, np.float32(0.97)))
    rot = L.rotation(fr.pose).astype(np.float32)
    light = (fr.light.astype(np.float32) @ rot).astype(np.float32)  # light in head coordinates
    ndl = np.clip((nx * light[0] + ny * light[1] + nz * light[2]), 0, 1)
    facing = rot[2, 0] * nx + rot[2, 1] * ny + rot[2, 2] * nz
    spec = ndl**24 * np.clip(facing, 0, 1)
    k = np.float32(scene.light_contrast)
    out = (1 - k) + k * np.float32(1.25) * ndl + np.float32(0.08) * spec
    return out[..., None]


def render(
    ident: Identity, scene: Scene, fr: Frame, size: int, noise: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Render one frame: (uint8 RGB ``size``×``size``×3, 81×2 float32 landmarks)."""
    g = ident.geometry
    lm = L.landmarks(g, fr.expression, fr.pose, size)
    img = scene.background
    if img.shape[0] != size:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    img = img.astype(np.float32, copy=True)
    s = fr.pose.scale
    shade = _shading(ident, scene, fr, size)
    # neck and shoulders
    jaw = lm[:17]
    neck = np.array([jaw[4], jaw[12], [jaw[12, 0] + 0.1 * s, size * 1.2], [jaw[4, 0] - 0.1 * s, size * 1.2]])
    a, roi = poly_alpha(size, neck, 0.8)
    _over(img, ident.skin * 0.78, a, roi, shade)
    chin_y = jaw[8, 1]
    shirt = np.array(
        [[-size, chin_y + 0.45 * s], [2 * size, chin_y + 0.45 * s], [2 * size, 2 * size], [-size, 2 * size]]
    )
    a, roi = poly_alpha(size, shirt, 3.0)
    _over(img, scene.shirt, a, roi, shade)
    # atlas layers follow the head: warp only the head's box
    layers = ident.atlas()
    aff = L.canonical_to_image_affine(fr.pose, size)
    w = 1.3 * ident.geometry.width
    corners = np.array(
        [[-w, -1.6, 1], [w, -1.6, 1], [-w, ident.hair_length + 0.1, 1], [w, ident.hair_length + 0.1, 1]]
    )
    head = roi_of(np.vstack([corners @ aff.T, lm]), 2, size)
    (y0, x0), (h, wd) = (head[0].start, head[1].start), _shape(head)
    if h and wd:
        du = (ATLAS_U[1] - ATLAS_U[0]) / (ATLAS - 1)
        dv = (ATLAS_V[1] - ATLAS_V[0]) / (ATLAS - 1)
        to_can = np.array([[du, 0, ATLAS_U[0]], [0, dv, ATLAS_V[0]], [0, 0, 1]])
        m = aff @ to_can
        m[:, 2] -= (x0, y0)
        warp = {
            k: cv2.warpAffine(a, m, (wd, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            for k, a in layers.items()
        }
        sh = shade[head]
        part = img[head]
        _over(part, warp["hair"][..., :3], warp["hair"][..., 3], shade=sh)
        outline = L.face_outline(lm)
        face_a, froi = poly_alpha(size, outline)
        local = (slice(froi[0].start - y0, froi[0].stop - y0), slice(froi[1].start - x0, froi[1].stop - x0))
        _over(part, warp["skin"][..., :3], face_a, local, sh)
        _draw_features(img, ident, fr, lm, shade, size)
        _over(part, warp["hair"][..., :3], warp["skin"][local][..., 3] * face_a, local, sh)
    # camera
    img *= (scene.tint * fr.exposure).astype(np.float32)
    if scene.blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), scene.blur)
    if scene.rescale < 1.0:
        small = max(8, round(size * scene.rescale))
        img = cv2.resize(img, (small, small), interpolation=cv2.INTER_AREA)
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
    if noise and scene.noise > 0:  # sensor noise: a window of the video's grain, shifted per frame
        oy, ox = fr.noise_offset
        img += scene.grain[oy : oy + size, ox : ox + size] * np.float32(scene.noise)
    return to_uint8(img), lm


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1] -> uint8."""
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def _draw_features(
    img: np.ndarray, ident: Identity, fr: Frame, lm: np.ndarray, shade: np.ndarray, size: int
) -> None:
    """Eyes, brows, nose and lips from the landmarks, drawn into ``img`` in place."""
    s = fr.pose.scale
    e = fr.expression
    f32 = np.float32
    # nose: side shadow, bridge highlight, nostrils
    side = -np.sign(fr.light[0]) if abs(fr.light[0]) > 0.05 else 1.0
    shadow = np.array([lm[28], lm[29] + [side * 0.09 * s, 0], lm[31 if side < 0 else 35], lm[30]])
    a, roi = poly_alpha(size, shadow, 0.05 * s)
    _scale(img, 0.8, a, roi)
    a, roi = _lines(size, [lm[27:31]], max(1, round(0.03 * s)), 0.02 * s, 1)
    _scale(img, 1.12, a * f32(0.8), roi)
    roi = roi_of(lm[31:36], 0.06 * s, size)
    nostrils = np.zeros(_shape(roi), np.float32)
    for k in (32, 34):
        c = tuple(int(v) for v in _offset(lm[k] + [0, -0.01 * s], roi))
        axes = (max(1, round(0.035 * s * 16)), max(1, round(0.018 * s * 16)))
        cv2.ellipse(nostrils, c, axes, 0, 0, 360, 1.0, -1, cv2.LINE_AA, shift=4)
    _scale(img, 0.35, cv2.GaussianBlur(nostrils, (0, 0), 0.6), roi)
    # nasolabial folds
    curves = []
    for a_, b_ in ((31, 48), (35, 54)):
        mid = (lm[a_] + lm[b_]) / 2 + (lm[a_] - lm[30]) * 0.5
        curves.append(np.array([lm[a_] + (lm[a_] - lm[33]) * 0.6, mid, lm[b_] + (lm[b_] - lm[51]) * 0.15]))
    a, roi = _lines(size, curves, 1, 0.012 * s, 1)
    _scale(img, 0.85, a * f32(0.4 + 0.6 * e.smile), roi)
    # eyes
    for idx in (L.LEFT_EYE, L.RIGHT_EYE):
        pts = lm[list(idx)]
        sclera, roi = poly_alpha(size, pts)
        _over(img, (0.92, 0.9, 0.88), sclera, roi, shade)
        w = float(np.linalg.norm(pts[3] - pts[0]))
        c = pts.mean(0) + np.array(fr.gaze) * [0.25 * w, 0.1 * w]
        disc = np.zeros((3, *_shape(roi)), np.float32)
        cc = tuple(int(v) for v in _offset(c, roi))
        gc = tuple(int(v) for v in _offset(c - 0.07 * w, roi))
        for k, (centre, r) in enumerate(((cc, 0.22), (cc, 0.1), (gc, 0.035))):
            cv2.circle(disc[k], centre, max(1, round(r * w * 16)), 1.0, -1, cv2.LINE_AA, shift=4)
        _over(img, ident.eyes, disc[0] * sclera, roi, shade)
        _over(img, (0.03, 0.03, 0.03), disc[1] * sclera, roi)
        _over(img, (1.0, 1.0, 1.0), disc[2] * sclera * f32(0.8), roi)
        a, roi2 = _lines(size, [pts[:4]], max(1, round(0.025 * s)), 0, 1)
        _over(img, (ident.hair * 0.4).astype(np.float32), a * f32(0.85), roi2)
        a, roi2 = _lines(size, [pts[:4] + np.array([0, -0.045 * s])], 1, 0.7, 1)
        _scale(img, 0.8, a * f32(0.6), roi2)
    # brows
    thick = max(2, round(0.045 * s * (0.8 + 0.4 * (ident.texture_seed % 7) / 6)))
    a, roi = _lines(size, [lm[17:22], lm[22:27]], thick, 0.8, 1)
    _over(img, ident.hair * 0.8, a * f32(0.9), roi, shade)
    # mouth: lips, then the inside (dark, teeth when open)
    outer, roi = poly_alpha(size, lm[list(L.MOUTH_OUTER)], 0.5)
    inner_pts = lm[list(L.MOUTH_INNER)]
    _over(img, ident.lips, outer, roi, shade)
    gap = float(np.linalg.norm(lm[66] - lm[62]))
    if gap > 1.5:
        inner, _ = poly_alpha(size, inner_pts, roi=roi)
        _over(img, (0.25, 0.07, 0.07), inner, roi, shade)
        teeth_pts = np.array(
            [lm[60], lm[61], lm[62], lm[63], lm[64], lm[63] + [0, 0.35 * gap], lm[61] + [0, 0.35 * gap]]
        )
        teeth, _ = poly_alpha(size, teeth_pts, roi=roi)
        _over(img, (0.9, 0.88, 0.8), teeth * inner, roi, shade)
    a, roi = _lines(size, [inner_pts[[0, 1, 2, 3, 4]]], 1, 0, 1)
    _over(img, (ident.lips * 0.4).astype(np.float32), a * f32(0.8), roi)
