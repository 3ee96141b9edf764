"""Face alignment and head pose from landmarks, in the convention the backbone was trained on.

AniFaceGAN (Wu et al., NeurIPS 2022) trains on FFHQ cropped the way GRAM (Deng et al., CVPR 2022,
`preprocess_dataset.py` of microsoft/GRAM) crops it, which in turn follows Deep3DFaceRecon (Deng et al.,
CVPRW 2019, `util/preprocess.py`):

1. five landmarks (eye centres, nose tip, mouth corners; image y flipped so it points up) are fitted to five
   standard 3-D landmarks of a mean face with a least-squares *orthographic* camera ("POS"): rows R1, R2 of a
   scaled 2x3 projection and a translation t;
2. the face scale is s = (|R1| + |R2|) / 2 pixels per template unit, and the training crop is the square of
   side 224·s/95 pixels centred on t, resized to the training resolution (GRAM: 256, then AniFaceGAN trains at
   128).

FFHQ's raw images are already rolled upright by FFHQ's own alignment, so GRAM never rotates human faces. A
painted head is often tilted: we therefore first undo the roll (the eye line becomes horizontal), then apply the
crop above to the de-rolled landmarks. The result is a similarity transform: a square (centre, side, angle) in
source pixels (`FaceAlignment`). GRAM rounds its resize and crop to whole pixels; we keep sub-pixel geometry
(under one output pixel of difference).

Pose: the same orthographic fit gives the camera's right and up axes in the template's frame; their cross
product points at the camera. The template's axes are the backbone's world axes (x right, y up, z towards the
frontal camera), so that direction converts straight to the backbone's camera angles (`model.camera`), with
AniFaceGAN's 0.1 rad pitch offset between Deep3DFaceRecon's angles and its own (`datasets.py`, `read_pose`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares
from PIL import Image

# Five standard 3-D landmarks of a mean face (left eye centre, right eye centre, nose tip, left and right mouth
# corner, "left" = image left), in GRAM's `face_lm3D` (Deep3DFaceRecon's `similarity_Lm3D_all.mat` reduced to five
# points, moved 0.2 down): x right, y up, z towards the viewer. Template units; only ratios matter.
FACE_TEMPLATE_5 = np.array([
    [-0.31148657, 0.09036078, 0.13377953],
    [0.30979887, 0.08972035, 0.13179526],
    [0.0032535, -0.24617933, 0.55244243],
    [-0.25216928, -0.5813392, 0.22405732],
    [0.2484662, -0.5812824, 0.22235769],
])
# The same, made exactly left-right symmetric (averaged with its mirror image): used for pose, so that a mirrored
# painting gets exactly the opposite yaw.
SYMMETRIC_TEMPLATE_5 = (FACE_TEMPLATE_5 + FACE_TEMPLATE_5[[1, 0, 2, 4, 3]] * np.array([-1.0, 1.0, 1.0])) / 2
# Side of the training crop per unit of face scale s (GRAM: scale' = s/256·224, crop 256 px after a resize by
# 95/scale', i.e. 224·s/95 source pixels).
CROP_SIDE_PER_SCALE = 224.0 / 95.0
# AniFaceGAN's camera pitch is Deep3DFaceRecon's face pitch minus 0.1 rad (datasets.py: -(angle_x - 0.1) + pi/2).
PITCH_OFFSET_DEG = math.degrees(0.1)
# iBUG-68 indices (0-based) that make the five points: eye corners averaged, nose tip, mouth corners.
_LEFT_EYE, _RIGHT_EYE, _NOSE_TIP, _MOUTH_LEFT, _MOUTH_RIGHT = (36, 39), (42, 45), 30, 48, 54


@dataclass(frozen=True)
class FaceAlignment:
    """The backbone's training crop of one face: a square in source-image pixels (x right, y down).

    `cx`, `cy`: its centre; `size`: its side; `angle_deg`: its rotation, counter-clockwise as seen on screen
    (a head tilted towards the viewer's left shoulder gives a positive angle). Warping this square upright
    (`warp_aligned`) gives the image the backbone would have been trained on.
    """

    cx: float
    cy: float
    size: float
    angle_deg: float = 0.0

    def corners(self) -> np.ndarray:
        """(4, 2) source pixels of the square's top-left, top-right, bottom-right, bottom-left (upright order)."""
        half = self.size / 2.0
        a = math.radians(self.angle_deg)
        # Screen counter-clockwise with y down: the square's x axis is (cos a, -sin a), its y axis (sin a, cos a).
        ux, uy = np.array([math.cos(a), -math.sin(a)]), np.array([math.sin(a), math.cos(a)])
        centre = np.array([self.cx, self.cy])
        return np.stack([centre + half * (sx * ux + sy * uy) for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))])

    def to_source(self, points: np.ndarray, resolution: int) -> np.ndarray:
        """Pixel coordinates in the upright (resolution²) crop -> source pixels: (N, 2) -> (N, 2)."""
        tl, tr, _, bl = self.corners()
        u = (np.asarray(points, dtype=np.float64) + 0.5) / resolution
        return tl + u[:, :1] * (tr - tl) + u[:, 1:] * (bl - tl)

    def to_crop(self, points: np.ndarray, resolution: int) -> np.ndarray:
        """Source pixels -> pixel coordinates in the upright (resolution²) crop: (N, 2) -> (N, 2)."""
        tl, tr, _, bl = self.corners()
        basis = np.stack([tr - tl, bl - tl], axis=1)                     # (2, 2) columns: crop x, crop y
        u = np.linalg.solve(basis, (np.asarray(points, dtype=np.float64) - tl).T).T
        return u * resolution - 0.5


@dataclass(frozen=True)
class FaceFraming:
    """Where a face's training crop (the GRAM square `align_face` returns) sits in a backbone's render frame.

    `scale`: the square's side as a fraction of the frame's; `cx`, `cy`: its centre in frame units (x right,
    y down). Backbones trained on GRAM crops (the official AniFaceGAN) frame a face exactly as the square:
    (1, 0.5, 0.5). A backbone that renders a smaller head in a wider frame (the demo's bust) declares it, and
    the painting's window grows to match (`window_for`), so the tuned render and the painting line up.
    """

    scale: float = 1.0
    cx: float = 0.5
    cy: float = 0.5

    def __post_init__(self):
        if not (0.1 <= self.scale <= 2.0 and 0.0 < self.cx < 1.0 and 0.0 < self.cy < 1.0):
            raise ValueError(f"a face framing needs scale in [0.1, 2] and a centre inside the frame, got {self}")

    @property
    def is_identity(self) -> bool:
        return (self.scale, self.cx, self.cy) == (1.0, 0.5, 0.5)

    def window_for(self, face: FaceAlignment) -> FaceAlignment:
        """The source square that, warped upright, shows `face`'s training crop where this framing puts it."""
        side = face.size / self.scale
        a = math.radians(face.angle_deg)
        ux, uy = np.array([math.cos(a), -math.sin(a)]), np.array([math.sin(a), math.cos(a)])  # as `corners`
        centre = np.array([face.cx, face.cy]) + side * ((0.5 - self.cx) * ux + (0.5 - self.cy) * uy)
        return FaceAlignment(cx=float(centre[0]), cy=float(centre[1]), size=float(side), angle_deg=face.angle_deg)


@dataclass(frozen=True)
class HeadPose:
    """Head pose in the project's degrees (0 = frontal; `model.camera`): yaw, pitch, and the in-image roll."""

    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    fit_error: float = 0.0   # RMS landmark residual of the pose fit, as a fraction of the training crop's side


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """iBUG-68 landmarks (68, 2) -> the five alignment points (5, 2); five points pass through unchanged."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape == (5, 2):
        return lm
    if lm.shape != (68, 2):
        raise ValueError(f"expected (68, 2) or (5, 2) landmarks, got shape {lm.shape}")
    return np.stack([lm[list(_LEFT_EYE)].mean(0), lm[list(_RIGHT_EYE)].mean(0), lm[_NOSE_TIP],
                     lm[_MOUTH_LEFT], lm[_MOUTH_RIGHT]])


def fit_orthographic(points_up: np.ndarray, template: np.ndarray = FACE_TEMPLATE_5
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares scaled orthographic camera (Deep3DFaceRecon's "POS"): 2-D points ≈ [R1; R2]·X + t.

    points_up: (N, 2) image points with y pointing up; template: (N, 3). Returns R1 (3,), R2 (3,), t (2,).
    """
    n = len(template)
    design = np.zeros((2 * n, 8))
    design[0::2, :3], design[0::2, 3] = template, 1.0
    design[1::2, 4:7], design[1::2, 7] = template, 1.0
    k = np.linalg.lstsq(design, np.asarray(points_up, dtype=np.float64).reshape(-1), rcond=None)[0]
    return k[0:3], k[4:7], np.array([k[3], k[7]])


def roll_of(points5: np.ndarray) -> float:
    """In-image roll in degrees (counter-clockwise on screen) from the eye line of the five points (y down)."""
    dx, dy = points5[1] - points5[0]
    return math.degrees(math.atan2(-dy, dx))


def _rotate(points: np.ndarray, centre: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate (N, 2) y-down points about `centre` by `angle_deg` clockwise on screen (undoes a roll of that angle)."""
    a = math.radians(angle_deg)
    # A screen-clockwise rotation with y down is the matrix of a mathematical counter-clockwise one.
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return (points - centre) @ rot.T + centre


def _derolled(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Five points, their roll, and the points with the roll undone about their mean."""
    p5 = five_points(landmarks)
    roll = roll_of(p5)
    centre = p5.mean(0)
    return p5, _rotate(p5, centre, roll), roll


def align_face(landmarks: np.ndarray) -> FaceAlignment:
    """The training crop of a face from its landmarks ((68, 2) iBUG or (5, 2), source pixels, y down)."""
    p5, upright, roll = _derolled(landmarks)
    centre = p5.mean(0)
    r1, r2, t = fit_orthographic(upright * np.array([1.0, -1.0]))    # y up for the fit, as Deep3DFaceRecon
    scale = (np.linalg.norm(r1) + np.linalg.norm(r2)) / 2.0
    crop_centre = np.array([t[0], -t[1]])                             # back to y down, still de-rolled
    cx, cy = _rotate(crop_centre[None], centre, -roll)[0]             # re-apply the roll
    return FaceAlignment(cx=float(cx), cy=float(cy), size=float(CROP_SIDE_PER_SCALE * scale), angle_deg=float(roll))


def pose_from_landmarks(landmarks: np.ndarray, fov_deg: float = 12.0) -> HeadPose:
    """Yaw/pitch (project degrees, 0 = frontal) and roll of a face from its landmarks (source pixels, y down).

    The five points are moved into the face's training crop (`align_face`), where the backbone's pinhole camera
    (on the unit sphere, looking at the origin, `fov_deg` wide) sees the template at the scale the crop implies;
    yaw, pitch, in-image roll, a shift and a scale are fitted by least squares, starting from the orthographic
    (POS) estimate. Perspective matters at 12 degrees: the orthographic answer alone is off by 1-2 degrees.
    A mirrored face gets the opposite yaw: the fit uses the symmetric template.
    """
    alignment = align_face(landmarks)
    observed = alignment.to_crop(five_points(landmarks), 1) + 0.5          # (5, 2) in [0, 1] crop units
    _, upright, roll = _derolled(landmarks)
    r1, r2, _ = fit_orthographic(upright * np.array([1.0, -1.0]))
    yaw0, pitch0 = _camera_angles(np.cross(r1, r2))
    world_per_unit = 2.0 * math.tan(math.radians(fov_deg) / 2.0) / CROP_SIDE_PER_SCALE
    template = _tilted(SYMMETRIC_TEMPLATE_5 * world_per_unit)

    def residual(x: np.ndarray) -> np.ndarray:
        yaw, pitch, extra_roll, dx, dy, log_scale = x
        uv = _project(template * math.exp(log_scale), yaw, pitch, fov_deg)  # (5, 2) in [0, 1], y down
        return (_rotate(uv, np.array([0.5, 0.5]), -extra_roll) + (dx, dy) - observed).ravel()

    # Bounded: a head turned beyond 89 degrees shows no five points, and landmarks of a damaged face must not
    # drive the fit round the back of the head.
    start = np.array([np.clip(yaw0, -80, 80), np.clip(pitch0, -55, 55), 0.0, 0.0, 0.0, 0.0])
    fit = least_squares(residual, start, x_scale=[10, 10, 10, .05, .05, .1],
                        bounds=([-89, -59, -45, -1, -1, -2], [89, 59, 45, 1, 1, 2]))
    yaw, pitch, extra_roll = fit.x[:3]
    error = float(np.sqrt(np.mean(fit.fun ** 2)))
    return HeadPose(yaw_deg=float(yaw), pitch_deg=float(pitch), roll_deg=float(roll + extra_roll), fit_error=error)


def _camera_angles(towards_camera: np.ndarray) -> tuple[float, float]:
    """Direction to the camera in the template's frame -> (yaw, pitch) in project degrees."""
    x, y, z = towards_camera / np.linalg.norm(towards_camera)
    # Backbone camera on the unit sphere: (sin p cos y, cos p, sin p sin y) with official radians (pi/2 frontal).
    yaw = (math.degrees(math.atan2(z, x)) - 90.0 + 180.0) % 360.0 - 180.0
    pitch = math.degrees(math.acos(float(np.clip(y, -1.0, 1.0)))) - 90.0 + PITCH_OFFSET_DEG
    return yaw, pitch


def _tilted(template: np.ndarray) -> np.ndarray:
    """The template as the backbone holds it: turned so a camera at pitch PITCH_OFFSET_DEG sees it frontally."""
    a = math.radians(PITCH_OFFSET_DEG)
    rot = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(a), -math.sin(a)], [0.0, math.sin(a), math.cos(a)]])
    return template @ rot.T


def _project(points: np.ndarray, yaw_deg: float, pitch_deg: float, fov_deg: float) -> np.ndarray:
    """World points -> [0, 1]² image coordinates (y down) for the backbone's camera at (yaw, pitch) degrees."""
    yaw, phi = math.radians(yaw_deg) + math.pi / 2, math.radians(pitch_deg) + math.pi / 2
    origin = np.array([math.sin(phi) * math.cos(yaw), math.cos(phi), math.sin(phi) * math.sin(yaw)])
    back = origin / np.linalg.norm(origin)
    right = np.cross([0.0, 1.0, 0.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    cam = (points - origin) @ np.stack([right, up, back], axis=1)           # (N, 3)
    ndc = cam[:, :2] / -cam[:, 2:3] / math.tan(math.radians(fov_deg) / 2)   # [-1, 1] across the image
    return np.stack([(ndc[:, 0] + 1) / 2, (1 - ndc[:, 1]) / 2], axis=1)


def warp_aligned(image: Image.Image, alignment: FaceAlignment, resolution: int,
                 fill: tuple[int, int, int] | None = None) -> Image.Image:
    """The upright square crop `alignment` of `image`, resampled to (resolution, resolution).

    Big downscales are first box-reduced (anti-aliasing, and bounded work for huge scans) to at least 1.5x the
    output sampling; parts of the square outside the image are filled by mirroring it, as GRAM pads, or with
    the colour `fill` (a wide window around a tight painting would otherwise show mirrored copies of the face).
    Coordinates are continuous pixels: pixel (i, j) covers [i, i+1) x [j, j+1).
    """
    factor = max(1, int(alignment.size / resolution / 1.5))
    if factor > 1:
        image = image.reduce(factor)
    corners = alignment.corners() / factor                            # (4, 2) tl, tr, br, bl
    w, h = image.size
    low, high = np.floor(corners.min(0)), np.ceil(corners.max(0))
    pad = int(max(0.0, -low[0], -low[1], high[0] - w, high[1] - h))
    if pad and fill is None:
        mode = "reflect" if pad < min(w, h) else "edge"
        image = Image.fromarray(np.pad(np.asarray(image), ((pad, pad), (pad, pad), (0, 0)), mode=mode))
        corners = corners + pad
    tl, tr, br, bl = corners
    quad = (*tl, *bl, *br, *tr)                                        # Pillow's QUAD order: ul, ll, lr, ur
    return image.transform((resolution, resolution), Image.Transform.QUAD, quad, Image.Resampling.BICUBIC,
                           fillcolor=fill)
