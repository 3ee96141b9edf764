"""Face-aware quality metrics of one tuned painting's renders, and the flags a reviewer reads from them.

3D-aware GAN papers judge a head by what face networks see in its renders: does a detector find a face in every
view, does the face keep one identity across the views (mean cosine similarity of a face descriptor against the
reference view), does it resemble its source, does the head turn the way the camera says (landmark pose against
the commanded pose), and does an expression edit read as that expression. `FaceScorer.score` computes these for
one painting's turntable, reference render, painting face and expression stills with the project's pretrained
face-api networks (`model.faces`); `face_flags` turns them into named problems.

How images are read (measured on aligned 64/128/256-px crops of the astronaut photo, of the demo paintings and of
the cameraman, each also mirrored: 30 test renders; and on turntables of the procedural head,
`model.anifacegan.demo_prior.reference_render`):

* Every image is first resized (bicubic) to WORK_SIDE = 256 px on its long side. Small renders are upscaled so
  that the landmark, descriptor and expression nets crop sharp faces; larger ones are downscaled, since those
  nets see crops of at most 150 px anyway. One working size also makes every later step size-independent.
* The SSD detector always sees a 512-px square, and a render is a tight face crop: fed alone (the detector pads
  and resizes it to 512) its face fills ~2/3 of that square, a scale the detector, trained on photographs,
  scores poorly: 56% of the test renders reached 0.5, the 64-px astronaut 0.00-0.21, whatever the upscaling
  before. Tiled 3x3 at 160 px on one 512 canvas (faces ~100 px wide, as in a 512-px portrait photo; tile
  origins on the detector's 16/32-px strides, which mattered: at 170-px origins the same render scored
  0.49-0.93 by position) 96% reached 0.5 and all 0.39, in every tile position; procedural-head renders
  0.78-0.93. One detector pass then serves nine images, and detection is the dominant cost on CPU.
* Detection threshold for renders and the painting's aligned face: RENDER_MIN_CONFIDENCE = 0.3, under
  face-api's 0.5 used for whole catalog paintings. A tuned render carries its painting's brushwork: painterly
  renders of faces any viewer reads as faces scored 0.39-0.55 (oil-style astronaut, sepia cameraman). Images
  without a face tiled the same way (flat grey, noise, smooth noise, coffee, a horse, a rocket, the Hubble field,
  photo backgrounds, a cat's back) scored at most 0.16; a cat's face 0.19-0.30 by tile position. 0.3 keeps every
  test face and rejects blank, noisy or smeared frames, the failures `no_face_in_renders` is for. The
  painting's aligned face was already found at the catalog threshold in the whole painting.
  The layout suits face-crop framing: a whole 256-px demo painting (face ~half its width) scored 0.34-0.63.
* Per image the best-scoring box is its face (a render holds one head; the analyzer's area x score rule, meant
  for several faces in a painting, lets a large low-score box win at a low threshold).
* Crops for the descriptor and expression nets are the ones face-api's own chain takes after landmarks:
  `landmarks.align(null, {useDlibAlignment: true})` for descriptors (a square from the eye and mouth centres)
  and `alignedRect` (the landmarks' bounding box grown by 20%) for expressions. They separated people better
  than the bare detector box (astronaut photo vs its painted versions 0.96-0.99 against 0.89-0.97; astronaut vs
  cameraman 0.84-0.86 against 0.86-0.87). With unreliable landmarks (`Face.landmarks_reliable`) both fall back
  to the detector box.
* An expression still without a detected face is recorded as `{}`: the classifier on a whole frame with no face
  in it would return confident-looking numbers about nothing.

Cost: one detector pass per 9 images, one landmark, one descriptor and one expression pass for all images,
one small least-squares pose fit per face. 24 frames of 128 px + reference + 2 stills + painting face: ~1.7 s
of CPU time on one thread.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from artmator.model.faces.align import HeadPose, pose_from_landmarks
from artmator.model.faces.analyzer import MAX_LANDMARK_FIT_ERROR, FaceAnalysisConfig, FaceAnalyzer
from artmator.model.faces.descriptor import FaceDescriptorNet, describe
from artmator.model.faces.expression import FaceExpressionNet, classify
from artmator.model.faces.landmarks import crop_region
from artmator.model.images import to_pil

ImageLike = Image.Image | torch.Tensor
Box = tuple[float, float, float, float]  # x, y, w, h in working-image pixels

RENDER_MIN_CONFIDENCE = 0.3
WORK_SIDE = 256
GRID, TILE_SIDE, CANVAS_SIDE = 3, 160, 512   # detector canvas: GRID x GRID tiles of TILE_SIDE px in 512 px
MIN_BOX_PX = 8                               # smaller detections (working px) are ignored
REFERENCE_EXPRESSION = "neutral"             # the reference render's key in FaceMetrics.expressions
SMILE_STILL = "happiness"                    # the expression still whose smile `expression_not_read` checks
# face-api's dlib-style alignment box (FaceLandmarks.alignDlib): side = eye-to-mouth distance / 0.45, placed
# 0.5 side left of and 0.43 side above the mean of the eye and mouth centres; alignedRect pads the bbox by 20%.
_DLIB_SCALE, _DLIB_REL_X, _DLIB_REL_Y, _MIN_BBOX_PADDING = 0.45, 0.5, 0.43, 0.2
# Descriptor norms measured on the test faces: 1.26-1.52, typically ~1.44 (see FaceMetricThresholds).
_TYPICAL_DESCRIPTOR_NORM = 1.44


@dataclass(frozen=True)
class FaceMetrics:
    """Face-network readings of one tuned painting's renders (None: nothing to measure, see each field)."""

    detected_fraction: float
    """Share of turntable frames in which the detector finds a face."""
    identity_consistency: float | None
    """Mean cosine similarity of descriptors, reference render vs each turntable frame with a face; None when
    the reference or every frame has no face."""
    likeness: float | None
    """Cosine similarity of descriptors, painting's aligned face vs reference render; None when either has no
    face or no painting face was given."""
    pose_error_deg: float | None
    """Mean |landmark yaw - commanded yaw| over frames with a face and reliable landmarks; None when none."""
    expressions: dict[str, dict[str, float]] = field(default_factory=dict)
    """Expression probabilities per still, `neutral` = the reference render; `{}` where no face was found."""

    def as_dict(self) -> dict:
        """JSON-ready copy: floats rounded to 4 decimals, None (and any non-finite value) as None."""
        return {
            "detected_fraction": _rounded(self.detected_fraction),
            "identity_consistency": _rounded(self.identity_consistency),
            "likeness": _rounded(self.likeness),
            "pose_error_deg": _rounded(self.pose_error_deg),
            "expressions": {name: {k: _rounded(p) for k, p in probs.items()}
                            for name, probs in self.expressions.items()},
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def cosine_threshold_for_distance(distance: float, norm: float = _TYPICAL_DESCRIPTOR_NORM) -> float:
    """The cosine similarity equivalent to a Euclidean descriptor distance, for descriptors of norm `norm`.

    |a - b|^2 = |a|^2 + |b|^2 - 2 a.b, so for equal norms n: cos = 1 - d^2 / (2 n^2).
    """
    return 1.0 - distance ** 2 / (2.0 * norm ** 2)


@dataclass(frozen=True)
class FaceMetricThresholds:
    """Limits behind `face_flags`. Defaults are reasoned below; a benchmark over tuned paintings should revisit them.

    min_identity_consistency: face-api calls descriptors within Euclidean distance 0.6 the same person. Its
    descriptors have norm ~1.44 (1.26-1.52 measured), so 0.6 is cos ~0.91 (0.89 at norm 1.3): 0.9. Measured with
    this module's crops: the same face 1.0, its mirror image 0.99, the astronaut in three painting styles
    0.95-0.99, astronaut vs cameraman 0.84-0.88.
    max_pose_error_deg: procedural-head turntables rendered with the backbone's camera (+-20 deg) scored 3.3-4.3
    deg at 64/128/256 px (the landmark yaw's own error); a head that does not turn (the frontal render at every
    commanded yaw) scores the mean |commanded yaw|, 10.5 deg for the default 24-frame +-20 deg turntable,
    12 deg for 5 frames at -20..20. 8 deg sits between the two.
    min_smile_gain: `expression_not_read` when the `happiness` still's P(happy) exceeds the neutral render's by
    no more than this. Not 0: the classifier saturates (P(happy) of a broad smile is 1 - 1e-7), and the same
    image read in two places differs by ~1e-6. A sitter who already smiles in the reference leaves no room to
    read a smile edit: the flag is then raised whatever the still shows.
    """

    min_detected_fraction: float = 0.8
    min_identity_consistency: float = 0.9
    max_pose_error_deg: float = 8.0
    min_smile_gain: float = 0.05


FACE_FLAGS = ("no_face_in_renders", "identity_drift", "pose_mismatch", "expression_not_read")


def face_flags(m: FaceMetrics, t: FaceMetricThresholds = FaceMetricThresholds()) -> list[str]:
    """Named problems of `m`, in FACE_FLAGS order; a metric that is None raises no flag of its own."""
    flags = []
    if m.detected_fraction < t.min_detected_fraction:
        flags.append("no_face_in_renders")
    if m.identity_consistency is not None and m.identity_consistency < t.min_identity_consistency:
        flags.append("identity_drift")
    if m.pose_error_deg is not None and m.pose_error_deg > t.max_pose_error_deg:
        flags.append("pose_mismatch")
    if _smile_not_read(m.expressions, t.min_smile_gain):
        flags.append("expression_not_read")
    return flags


def _smile_not_read(expressions: Mapping[str, Mapping[str, float]], min_gain: float) -> bool:
    """The `happiness` still shows no face, or its P(happy) is not above the neutral render's (+ min_gain).

    Without a `happiness` still, or without a face in the neutral render, there is nothing to compare.
    """
    if SMILE_STILL not in expressions:
        return False
    smile, neutral = expressions[SMILE_STILL], expressions.get(REFERENCE_EXPRESSION, {})
    if not smile:
        return True
    return bool(neutral) and smile["happy"] - neutral["happy"] <= min_gain


# ------------------------------------------------------------------------------------------------ scoring
@dataclass(frozen=True)
class _SeenFace:
    """The face found in one working image (WORK_SIDE px on its long side)."""

    box: Box
    score: float
    landmarks: np.ndarray   # (68, 2) working-image pixels
    pose: HeadPose

    @property
    def reliable(self) -> bool:
        return self.pose.fit_error <= MAX_LANDMARK_FIT_ERROR


class FaceScorer:
    """Loads detector+landmarks (FaceAnalyzer), descriptor and expression nets once; `score` reads renders.

    `analysis.min_confidence` is the detection threshold for every image scored (renders and the painting's
    aligned face; default RENDER_MIN_CONFIDENCE, see the module docstring) and `analysis.fov_deg` the camera
    the landmark pose is fitted with. Each network runs once per `score` call on all images together.
    """

    def __init__(self, analysis: FaceAnalysisConfig = FaceAnalysisConfig(min_confidence=RENDER_MIN_CONFIDENCE),
                 device: str | torch.device = "cpu"):
        self.config = analysis
        self.analyzer = FaceAnalyzer(analysis, device)
        self.descriptor_net = FaceDescriptorNet.pretrained().to(device)
        self.expression_net = FaceExpressionNet.pretrained().to(device)

    def score(self, turntable: Sequence[ImageLike], turntable_yaws_deg: Sequence[float], reference: ImageLike,
              painting_face: ImageLike | None, expression_stills: Mapping[str, ImageLike]) -> FaceMetrics:
        """Metrics of one painting's renders. Images: PIL RGB, or (3, H, W)/(1, 3, H, W) tensors in [-1, 1]
        (`turntable` may also be one (N, 3, H, W) tensor, and its yaws one tensor).

        `turntable_yaws_deg[i]` is the yaw frame i was rendered at (project degrees); `reference` is the render at
        the painting's pose; a still named `neutral` is ignored: that render is `reference`.
        """
        if len(turntable) == 0 or len(turntable) != len(turntable_yaws_deg):
            raise ValueError(f"need a non-empty turntable with one yaw per frame, got {len(turntable)} frames "
                             f"and {len(turntable_yaws_deg)} yaws")
        stills = {k: v for k, v in expression_stills.items() if k != REFERENCE_EXPRESSION}
        images = [*turntable, reference, *stills.values()] + ([painting_face] if painting_face is not None else [])
        works = [working_image(im) for im in images]                 # each (H, W, 3) uint8, long side 256
        faces = self._find_faces(works)
        n = len(turntable)
        frames = faces[:n]
        frame_desc, ref_desc, painting_desc = self._descriptors(works, faces, n, painting_face is not None)
        return FaceMetrics(
            detected_fraction=sum(f is not None for f in frames) / n,
            identity_consistency=_mean([_cosine(ref_desc, d) for d in frame_desc]) if ref_desc is not None else None,
            likeness=(_cosine(painting_desc, ref_desc)
                      if ref_desc is not None and painting_desc is not None else None),
            pose_error_deg=_mean([abs(f.pose.yaw_deg - float(yaw)) for f, yaw in zip(frames, turntable_yaws_deg)
                                  if f is not None and f.reliable]),
            expressions=self._expressions(works[n:n + 1 + len(stills)], faces[n:n + 1 + len(stills)],
                                          [REFERENCE_EXPRESSION, *stills]),
        )

    # -------------------------------------------------------------------------------------------- networks
    def _find_faces(self, works: list[np.ndarray]) -> list[_SeenFace | None]:
        """The face of each working image, or None: one detector pass over tiled canvases, one landmark pass."""
        per_canvas = GRID * GRID
        canvases = [_canvas(works[i:i + per_canvas]) for i in range(0, len(works), per_canvas)]
        found = self.analyzer.detector.detect_batch([c for c, _ in canvases], self.config.min_confidence, 100)
        boxes: list[tuple[Box, float] | None] = []
        for (_, tiles), detections in zip(canvases, found):
            boxes += [_best_in_tile(detections, tile) for tile in tiles]
        hits = [i for i, b in enumerate(boxes) if b is not None]
        marks = self.analyzer.landmarker.detect_batch([works[i] for i in hits], [[boxes[i][0]] for i in hits])
        faces: list[_SeenFace | None] = [None] * len(works)
        for i, lm in zip(hits, marks):
            box, score = boxes[i]
            faces[i] = _SeenFace(box, score, lm[0], pose_from_landmarks(lm[0], self.config.fov_deg))
        return faces

    def _descriptors(self, works: list[np.ndarray], faces: list[_SeenFace | None], n: int, has_painting: bool
                     ) -> tuple[list[np.ndarray], np.ndarray | None, np.ndarray | None]:
        """Unit descriptors of the turntable frames with a face, the reference and the painting (None: no face)."""
        wanted = [*range(n + 1)] + ([len(works) - 1] if has_painting else [])
        wanted = [i for i in wanted if faces[i] is not None]
        if n not in wanted:                     # no reference face: no identity or likeness to measure
            return [], None, None
        crops = [_crop(works[i], faces[i], _descriptor_box(faces[i])) for i in wanted]
        desc = describe(crops, self.descriptor_net)                  # (K, 128)
        desc = desc / np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
        by_index = dict(zip(wanted, desc))
        painting = by_index.get(len(works) - 1) if has_painting else None
        return [by_index[i] for i in wanted if i < n], by_index[n], painting

    def _expressions(self, works: list[np.ndarray], faces: list[_SeenFace | None], names: list[str]
                     ) -> dict[str, dict[str, float]]:
        """Expression probabilities per name; `{}` for an image without a face."""
        hits = [i for i, f in enumerate(faces) if f is not None]
        crops = [_crop(works[i], faces[i], _expression_box(faces[i])) for i in hits]
        probs = classify(crops, self.expression_net) if crops else []
        by_index = dict(zip(hits, probs))
        return {name: by_index.get(i, {}) for i, name in enumerate(names)}


# ------------------------------------------------------------------------------------------------ images
def working_image(image: ImageLike) -> np.ndarray:
    """PIL image or (3, H, W)/(1, 3, H, W) tensor in [-1, 1] -> (H', W', 3) uint8, long side WORK_SIDE (bicubic).

    Tensors go through `model.images.to_pil` (clamp, round), so a tensor and the PNG written from it score alike.
    """
    pil = to_pil(image) if isinstance(image, torch.Tensor) else image.convert("RGB")
    return np.asarray(_fit(pil, WORK_SIDE))


def _fit(image: Image.Image, side: int) -> Image.Image:
    """`image` resized (bicubic, aspect kept) so its long side is `side`."""
    w, h = image.size
    scale = side / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return image if size == (w, h) else image.resize(size, Image.Resampling.BICUBIC)


@dataclass(frozen=True)
class _Tile:
    """Where one working image sits on a detector canvas: top-left corner, size there, scale from working px."""

    x: int
    y: int
    w: int
    h: int
    scale: float


def _canvas(works: Sequence[np.ndarray]) -> tuple[np.ndarray, list[_Tile]]:
    """Up to GRID^2 working images -> one (512, 512, 3) uint8 canvas (black elsewhere) and their tiles."""
    canvas = np.zeros((CANVAS_SIDE, CANVAS_SIDE, 3), np.uint8)
    tiles = []
    for k, work in enumerate(works):
        small = np.asarray(_fit(Image.fromarray(work), TILE_SIDE))   # (h, w, 3), long side TILE_SIDE
        x, y = (k % GRID) * TILE_SIDE, (k // GRID) * TILE_SIDE
        h, w = small.shape[:2]
        canvas[y:y + h, x:x + w] = small
        tiles.append(_Tile(x, y, w, h, w / work.shape[1]))
    return canvas, tiles


def _best_in_tile(detections, tile: _Tile) -> tuple[Box, float] | None:
    """The best-scoring detection centred in `tile`, clipped to it, as a (working-pixel box, score)."""
    best = None
    for d in detections:
        x, y, w, h = d.box
        if not (tile.x <= x + w / 2 < tile.x + tile.w and tile.y <= y + h / 2 < tile.y + tile.h):
            continue
        if best is None or d.score > best.score:
            best = d
    if best is None:
        return None
    x, y, w, h = best.box
    x0, y0 = max(x, tile.x), max(y, tile.y)
    x1, y1 = min(x + w, tile.x + tile.w), min(y + h, tile.y + tile.h)
    s = tile.scale
    box = ((x0 - tile.x) / s, (y0 - tile.y) / s, (x1 - x0) / s, (y1 - y0) / s)
    # A box under MIN_BOX_PX working pixels is no usable face (and has no pixels to crop for landmarks).
    return (box, float(best.score)) if min(box[2:]) >= MIN_BOX_PX else None


def _descriptor_box(face: _SeenFace) -> Box:
    """face-api's descriptor crop: `landmarks.align(null, {useDlibAlignment: true})`; the box if unreliable."""
    if not face.reliable:
        return face.box
    lm = face.landmarks
    eyes_mouth = np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[48:68].mean(0)])   # (3, 2)
    to_mouth = np.linalg.norm(eyes_mouth[2] - eyes_mouth[:2], axis=1).mean()
    size = math.floor(to_mouth / _DLIB_SCALE)
    cx, cy = eyes_mouth.mean(0)
    return (math.floor(max(0.0, cx - _DLIB_REL_X * size)), math.floor(max(0.0, cy - _DLIB_REL_Y * size)),
            float(size), float(size))


def _expression_box(face: _SeenFace) -> Box:
    """face-api's `alignedRect`: the landmarks' bounding box grown by 20% about its centre; the box if unreliable."""
    if not face.reliable:
        return face.box
    (x0, y0), (x1, y1) = face.landmarks.min(0), face.landmarks.max(0)
    w, h = x1 - x0, y1 - y0
    p = _MIN_BBOX_PADDING
    return (x0 - p * w / 2, y0 - p * h / 2, w * (1 + p), h * (1 + p))


def _crop(work: np.ndarray, face: _SeenFace, box: Box) -> np.ndarray:
    """The pixels of `box` as face-api extracts them (clipped to the image, floored): (h, w, 3) uint8.

    A landmark box with no pixels in the image (degenerate landmarks) falls back to the detector box.
    """
    x, y, w, h = crop_region(box, work.shape[:2])
    if w < 1 or h < 1:
        x, y, w, h = crop_region(face.box, work.shape[:2])
    return np.ascontiguousarray(work[y:y + h, x:x + w])


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two descriptors, in [-1, 1] (float32 unit vectors alone give 1 + 3e-8 for a pair of
    identical faces)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.clip(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)), -1.0, 1.0))


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


__all__ = ["FaceMetrics", "FaceMetricThresholds", "FaceScorer", "face_flags", "FACE_FLAGS",
           "RENDER_MIN_CONFIDENCE", "cosine_threshold_for_distance", "working_image"]
