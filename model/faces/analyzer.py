"""Find, align and pose the faces of a whole painting: detector -> 68 landmarks -> training crop + head pose.

One `FaceAnalyzer` holds the networks (load once per process or actor); `faces(image)` returns every face,
main face first. The main face is the one with the largest box area times detector confidence: in a portrait
the sitter, not a face in a background painting or a reflection.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image

from artmator.model.faces.align import FaceAlignment, HeadPose, align_face, pose_from_landmarks
from artmator.model.faces.detector import FaceDetector
from artmator.model.faces.landmarks import FaceLandmark68Net

FACE_ERROR_KINDS = ("no_face", "face_too_small")
# Landmarks whose pose fit leaves an RMS residual above this fraction of the crop side are not trusted (good
# faces fit to ~0.015; a face half hidden by a camera or hand, ~0.15): the crop then comes from the detector box
# and the pose is left to the render-based search.
MAX_LANDMARK_FIT_ERROR = 0.05
# Training crop from a detector box alone, measured on faces whose landmarks fit well (the demo paintings and
# the astronaut photo): side ~1.6 box widths, centre ~0.19 box heights above the box centre.
BOX_CROP_SIDE, BOX_CROP_RAISE = 1.6, 0.19


class FaceError(ValueError):
    """A painting whose face cannot be used: `kind` is `no_face` or `face_too_small`; `source` names the file."""

    def __init__(self, kind: str, source: str, detail: str):
        if kind not in FACE_ERROR_KINDS:
            raise ValueError(f"unknown FaceError kind {kind!r}; kinds are {FACE_ERROR_KINDS}")
        super().__init__(f"{source}: {detail}")
        self.kind, self.source, self.detail = kind, source, detail

    def __reduce__(self):  # keeps kind/source across processes (Ray pickles exceptions)
        return (type(self), (self.kind, self.source, self.detail))


@dataclass(frozen=True)
class Face:
    """One face in source-image pixels (x right, y down)."""

    box: tuple[float, float, float, float]   # detector box x, y, w, h
    confidence: float                        # detector score in (0, 1)
    landmarks: np.ndarray                    # (68, 2) iBUG order
    alignment: FaceAlignment                 # the backbone's training crop
    pose: HeadPose                           # yaw/pitch in project degrees, roll

    @property
    def landmarks_reliable(self) -> bool:
        """Whether the landmarks fit a face well enough to trust their crop and pose (else: box crop, search)."""
        return self.pose.fit_error <= MAX_LANDMARK_FIT_ERROR

    @property
    def prominence(self) -> float:
        return self.box[2] * self.box[3] * self.confidence

    def scaled(self, factor: float, dx: float = 0.0, dy: float = 0.0) -> Face:
        """The same face in an image `factor` times larger, then shifted by (dx, dy): analysis ran on a reduced
        copy, or on a region of the image."""
        a, (x, y, w, h) = self.alignment, self.box
        return replace(self, box=(x * factor + dx, y * factor + dy, w * factor, h * factor),
                       landmarks=self.landmarks * factor + np.array([dx, dy]),
                       alignment=replace(a, cx=a.cx * factor + dx, cy=a.cy * factor + dy, size=a.size * factor))


@dataclass(frozen=True)
class FaceAnalysisConfig:
    """How faces are found and which are usable."""

    min_confidence: float = 0.5
    """Detector score threshold (face-api's default). Painted faces score from ~0.98 (a Cubist self-portrait)
    down to ~0.6 (a strongly stylised Fauvist face): higher thresholds drop real paintings."""
    min_face_px: float = 64.0
    """Smallest usable training-crop side in source pixels; a smaller face is `face_too_small` (the backbone
    trains at 128 px: below half of that the painting's brushwork is mostly upsampling blur)."""
    max_faces: int = 20
    """At most this many faces per painting (best scores first)."""
    fov_deg: float = 12.0
    """The backbone camera's field of view, used by the pose fit (AniFaceGAN: 12)."""

    def __post_init__(self):
        if not 0 < self.min_confidence < 1:
            raise ValueError(f"min_confidence must be in (0, 1), got {self.min_confidence}")
        if self.min_face_px <= 0 or self.max_faces < 1:
            raise ValueError("min_face_px must be > 0 and max_faces >= 1")


class FaceAnalyzer:
    """The pretrained detector and landmark networks, loaded once; `faces(image)` -> faces, main face first."""

    def __init__(self, config: FaceAnalysisConfig = FaceAnalysisConfig(), device: str | torch.device = "cpu"):
        self.config = config
        self.detector = FaceDetector.pretrained().to(device)
        self.landmarker = FaceLandmark68Net.pretrained().to(device)

    @torch.no_grad()
    def faces(self, image: Image.Image | np.ndarray) -> list[Face]:
        """Every face of an RGB image (PIL or HxWx3 uint8), sorted by prominence (area x confidence)."""
        pixels = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.uint8)
        found = self.detector.detect(pixels, self.config.min_confidence, self.config.max_faces)
        if not found:
            return []
        marks = self.landmarker.detect(pixels, [f.box for f in found])          # (N, 68, 2)
        # A box lying wholly in the detector's padding of a non-square image has no pixels: NaN landmarks.
        faces = [_face(tuple(float(v) for v in f.box), float(f.score), np.asarray(lm), self.config.fov_deg)
                 for f, lm in zip(found, marks) if np.isfinite(lm).all()]
        return sorted(faces, key=lambda f: -f.prominence)


def _face(box: tuple[float, float, float, float], score: float, landmarks: np.ndarray, fov_deg: float) -> Face:
    pose = pose_from_landmarks(landmarks, fov_deg)
    if pose.fit_error <= MAX_LANDMARK_FIT_ERROR:
        alignment = align_face(landmarks)
    else:
        x, y, w, h = box
        alignment = FaceAlignment(cx=x + w / 2, cy=y + h / 2 - BOX_CROP_RAISE * h, size=BOX_CROP_SIDE * w)
    return Face(box=box, confidence=score, landmarks=landmarks, alignment=alignment, pose=pose)


def check_face_size(face: Face, config: FaceAnalysisConfig, source: str) -> None:
    if face.alignment.size < config.min_face_px:
        raise FaceError("face_too_small", source, f"the face's aligned crop is {face.alignment.size:.0f} px wide, "
                                                  f"under {config.min_face_px:g} px; supply a larger scan")
