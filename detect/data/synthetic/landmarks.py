"""The 81-point face model of the synthetic benchmark: geometry, expression, pose and projection.

Points follow dlib's 68-point order (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67) plus the
13 forehead points of the 81-point predictor (68-80). The predictor stores the forehead points out of order;
SBI-style loaders reorder them with ``[77, 75, 76, 68, 69, 70, 71, 80, 72, 73, 79, 74, 78]`` into a
contour running from the left temple (above point 0) over the top to the right temple (above point 16). The
files here are written in the predictor's raw order, so that reordering yields that contour.

Canonical coordinates: x right, y down, z towards the camera, face half-width about 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_POINTS = 81
FOREHEAD_CONTOUR_ORDER = (77, 75, 76, 68, 69, 70, 71, 80, 72, 73, 79, 74, 78)
"""``FOREHEAD_CONTOUR_ORDER[k]`` is the raw index holding the k-th forehead contour point (left to right)."""

JAW = tuple(range(0, 17))
BROWS = tuple(range(17, 27))
NOSE = tuple(range(27, 36))
EYES = tuple(range(36, 48))
LEFT_EYE = tuple(range(36, 42))
RIGHT_EYE = tuple(range(42, 48))
MOUTH = tuple(range(48, 68))
MOUTH_OUTER = tuple(range(48, 60))
MOUTH_INNER = tuple(range(60, 68))
INNER_FACE = tuple(range(17, 68))


@dataclass(frozen=True)
class Geometry:
    """Identity shape parameters (canonical units)."""

    width: float = 1.0
    chin: float = 1.05
    squareness: float = 2.4
    forehead: float = 0.9
    eye_dx: float = 0.38
    eye_y: float = -0.22
    eye_w: float = 0.14
    eye_h: float = 0.06
    brow_y: float = -0.42
    brow_arch: float = 0.06
    nose_len: float = 0.45
    nose_w: float = 0.16
    mouth_y: float = 0.58
    mouth_w: float = 0.3
    lip_up: float = 0.07
    lip_down: float = 0.09


@dataclass(frozen=True)
class Expression:
    """Per-frame expression: mouth opening, smile, blink and brow raise, each about in [0, 1]."""

    open: float = 0.0
    smile: float = 0.0
    blink: float = 0.0
    brow: float = 0.0


@dataclass(frozen=True)
class Pose:
    """Head pose (radians) and placement in the crop (pixels per canonical unit, centre offset)."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    scale: float = 90.0
    dx: float = 0.0
    dy: float = 0.0


def sample_geometry(rng: np.random.Generator, spread: float = 1.0) -> Geometry:
    """Draw an identity's shape; ``spread`` scales the variation around the mean face."""
    base = Geometry()

    def j(value: float, sd: float) -> float:
        return float(value + spread * sd * rng.standard_normal())

    return Geometry(
        width=j(base.width, 0.05),
        chin=j(base.chin, 0.06),
        squareness=float(np.clip(j(base.squareness, 0.45), 1.8, 3.6)),
        forehead=j(base.forehead, 0.06),
        eye_dx=j(base.eye_dx, 0.025),
        eye_y=j(base.eye_y, 0.03),
        eye_w=j(base.eye_w, 0.012),
        eye_h=float(np.clip(j(base.eye_h, 0.01), 0.035, 0.09)),
        brow_y=j(base.brow_y, 0.03),
        brow_arch=float(np.clip(j(base.brow_arch, 0.025), 0.0, 0.14)),
        nose_len=j(base.nose_len, 0.04),
        nose_w=j(base.nose_w, 0.02),
        mouth_y=j(base.mouth_y, 0.035),
        mouth_w=j(base.mouth_w, 0.03),
        lip_up=float(np.clip(j(base.lip_up, 0.015), 0.035, 0.12)),
        lip_down=float(np.clip(j(base.lip_down, 0.015), 0.045, 0.14)),
    )


def canonical_points(g: Geometry, e: Expression) -> np.ndarray:
    """81×3 canonical points (raw 81-point order) for a shape and an expression."""
    p = np.zeros((N_POINTS, 3), np.float64)
    y_ear = -0.3
    gap = 0.22 * e.open
    drop = 0.12 * e.open
    # jaw: superellipse from the left ear over the chin to the right ear
    phi = np.linspace(0.0, np.pi, 17)
    c, s = np.cos(phi), np.sin(phi)
    ex = 2.0 / g.squareness
    jx = -g.width * np.sign(c) * np.abs(c) ** ex
    jy = y_ear + (g.chin - y_ear) * np.abs(s) ** ex
    jy = jy + drop * np.abs(s) ** 4
    p[0:17, 0], p[0:17, 1] = jx, jy
    p[0:17, 2] = 0.55 * np.sqrt(np.clip(1 - (jx / g.width) ** 2, 0, 1)) + 0.05
    # forehead contour, left temple -> top -> right temple, stored in the predictor's raw order
    psi = np.linspace(np.pi, 0.0, 13)
    fx = 0.93 * g.width * np.cos(psi)
    fy = y_ear - 0.08 - g.forehead * np.sin(psi) ** 0.7
    fz = 0.2 + 0.45 * np.sin(psi)
    for k, raw in enumerate(FOREHEAD_CONTOUR_ORDER):
        p[raw] = (fx[k], fy[k], fz[k])
    # brows (outer -> inner on the left, inner -> outer on the right)
    t = np.linspace(0.0, 1.0, 5)
    bx = -0.78 + 0.62 * t
    by = g.brow_y - g.brow_arch * np.sin(np.pi * (0.3 + 0.7 * t)) - 0.07 * e.brow
    p[17:22, 0], p[17:22, 1], p[17:22, 2] = bx, by, 0.72
    p[22:27, 0], p[22:27, 1], p[22:27, 2] = -bx[::-1], by[::-1], 0.72
    # nose bridge and base
    top = g.eye_y - 0.04
    tip = top + g.nose_len
    p[27:31, 0] = 0.0
    p[27:31, 1] = np.linspace(top, tip, 4)
    p[27:31, 2] = np.linspace(0.78, 1.08, 4)
    nb = tip + 0.06
    p[31:36, 0] = np.array([-1.0, -0.5, 0.0, 0.5, 1.0]) * g.nose_w
    p[31:36, 1] = nb + np.array([-0.02, 0.01, 0.025, 0.01, -0.02])
    p[31:36, 2] = np.array([0.8, 0.88, 0.95, 0.88, 0.8])
    # eyes: 36 outer-left .. 39 inner-left, 42 inner-right .. 45 outer-right
    up = g.eye_h * (1.0 - 0.85 * e.blink)
    dn = 0.75 * g.eye_h * (1.0 - 0.6 * e.blink)
    for cx, first in ((-g.eye_dx, 36), (g.eye_dx, 42)):
        hw = g.eye_w
        pts = [
            (cx - hw, g.eye_y),
            (cx - hw / 3, g.eye_y - up),
            (cx + hw / 3, g.eye_y - up),
            (cx + hw, g.eye_y),
            (cx + hw / 3, g.eye_y + dn),
            (cx - hw / 3, g.eye_y + dn),
        ]
        for k, (x, y) in enumerate(pts):
            p[first + k] = (x, y, 0.74)
    # mouth
    mw = g.mouth_w * (1.0 + 0.18 * e.smile)
    my = g.mouth_y
    corner_up = 0.05 * e.smile
    ul, ll = g.lip_up, g.lip_down
    ox = np.array([-1.0, -0.6, -0.25, 0.0, 0.25, 0.6, 1.0, 0.6, 0.25, 0.0, -0.25, -0.6]) * mw
    oy = np.array(
        [
            my - corner_up,
            my - 0.75 * ul,
            my - ul,
            my - 0.85 * ul,
            my - ul,
            my - 0.75 * ul,
            my - corner_up,
            my + gap + 0.8 * ll,
            my + gap + 1.05 * ll,
            my + gap + 1.1 * ll,
            my + gap + 1.05 * ll,
            my + gap + 0.8 * ll,
        ]
    )
    p[48:60, 0], p[48:60, 1], p[48:60, 2] = ox, oy, 0.86
    ix = np.array([-0.82, -0.35, 0.0, 0.35, 0.82, 0.35, 0.0, -0.35]) * mw
    iy = np.array(
        [
            my - 0.8 * corner_up,
            my - 0.1 * ul,
            my - 0.08 * ul,
            my - 0.1 * ul,
            my - 0.8 * corner_up,
            my + gap + 0.1 * ll,
            my + gap + 0.08 * ll,
            my + gap + 0.1 * ll,
        ]
    )
    p[60:68, 0], p[60:68, 1], p[60:68, 2] = ix, iy, 0.88
    return p


def rotation(pose: Pose) -> np.ndarray:
    """3×3 rotation: roll (image plane) · pitch (x axis) · yaw (y axis)."""
    cy, sy = np.cos(pose.yaw), np.sin(pose.yaw)
    cp, sp = np.cos(pose.pitch), np.sin(pose.pitch)
    cr, sr = np.cos(pose.roll), np.sin(pose.roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


def centre(pose: Pose, size: int) -> np.ndarray:
    """Pixel position of the canonical origin: the crop centres the brows-to-chin box, as dlib's is."""
    return np.array([size / 2 + pose.dx, size / 2 - 0.25 * pose.scale + pose.dy])


def project(points: np.ndarray, pose: Pose, size: int) -> np.ndarray:
    """Orthographic projection of canonical 3-D points into the ``size``×``size`` crop (pixels)."""
    rot = rotation(pose)
    q = points @ rot.T
    return (q[:, :2] * pose.scale + centre(pose, size)).astype(np.float32)


def canonical_to_image_affine(pose: Pose, size: int, depth: float = 0.6) -> np.ndarray:
    """2×3 affine mapping canonical (x, y) at depth ``depth`` to pixels: for textures and shading."""
    rot = rotation(pose)
    lin = rot[:2, :2] * pose.scale
    off = rot[:2, 2] * depth * pose.scale + centre(pose, size)
    return np.hstack([lin, off[:, None]]).astype(np.float64)


def landmarks(g: Geometry, e: Expression, pose: Pose, size: int) -> np.ndarray:
    """81×2 float32 pixel landmarks of a face."""
    return project(canonical_points(g, e), pose, size)


def forehead_contour(lm: np.ndarray) -> np.ndarray:
    """The 13 forehead points in contour order (left temple -> right temple)."""
    return lm[list(FOREHEAD_CONTOUR_ORDER)]


def face_outline(lm: np.ndarray) -> np.ndarray:
    """Closed outline of the whole face: jaw 0..16 then the forehead contour back from right to left."""
    return np.concatenate([lm[:17], forehead_contour(lm)[::-1]], axis=0)
