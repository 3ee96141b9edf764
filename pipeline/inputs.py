"""A manifest row -> the tuning input: the painting's aligned face and its pose (shared by `run` and `tune`).

What a row gives decides how much analysis runs:

| row has                | face square used                         | pose used                                   |
|------------------------|------------------------------------------|---------------------------------------------|
| `face_align`           | that square (from `artmator prepare`)    | given, else the render-based search         |
| `crop`                 | that box, fitted into a square as before | given, else landmarks in the box, else search|
| neither (whole image)  | detected face's training crop            | given, else landmarks, else search          |
| neither, `find_faces` off (ImageConfig) | the whole image, as a face crop | given, else landmarks, else search |

A whole painting without a detectable face fails with `no_face` instead of tuning the whole canvas (which
only gives a blob). Landmarks that do not fit a face (`Face.landmarks_reliable`) never set a pose.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

from artmator.model.faces.align import FaceAlignment, FaceFraming
from artmator.model.images import ImageConfig, decode_painting, prepare_painting, read_painting
from artmator.model.tune import PaintingInput
from artmator.pipeline.manifest import PaintingTask

# Whole images are analysed on a copy at most this large (the detector looks at 512 px; landmarks at 112 px).
ANALYSIS_SIDE = 1536


@dataclass(frozen=True)
class FaceInput:
    """How the tuned face was found, recorded in result.json (`face_input`) and the run report."""

    alignment_source: str                     # "face_align" | "crop" | "whole_image" | "detected" | "detected_box"
    pose_source: str                          # "given" | "landmarks" | "search"
    alignment: dict | None = None             # the square used, source pixels (cx, cy, size, angle_deg)
    face_confidence: float | None = None
    faces_found: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def painting_input(task: PaintingTask, resolution: int, image_config: ImageConfig,
                   analyzer: Callable[[], object], storage_options: Mapping | None = None,
                   framing: FaceFraming = FaceFraming(), image_bytes: bytes | None = None
                   ) -> tuple[PaintingInput, FaceInput]:
    """Read the painting (or decode `image_bytes`, already fetched) and decide its face square and pose.
    `analyzer()` returns the process's FaceAnalyzer (created on first use: rows with a square and a pose never
    load the face networks). `framing`: the backbone's (`Backbone.face_framing`); the face square is widened to
    it for the tuning input."""
    image = (read_painting(task.image_uri, image_config, storage_options) if image_bytes is None
             else decode_painting(image_bytes, task.image_uri, image_config))
    yaw, pitch = task.yaw_deg, task.pitch_deg
    pose_source = (task.pose_source or "given") if yaw is not None else "search"
    crop = None
    if task.face_align is not None:
        alignment = FaceAlignment(**asdict(task.face_align))
        facts = dict(alignment_source="face_align", face_confidence=task.face_confidence)
    elif task.crop is not None or not image_config.find_faces:
        alignment, c = None, task.crop
        crop = None if c is None else (c.x, c.y, c.w, c.h)
        facts = dict(alignment_source="crop" if c is not None else "whole_image")
        if yaw is None and task.pose_source != "search":
            face = _faces(analyzer(), image if c is None else image.crop((c.x, c.y, c.x + c.w, c.y + c.h)))
            if face is not None and face[0].landmarks_reliable:
                yaw, pitch, pose_source = face[0].pose.yaw_deg, face[0].pose.pitch_deg, "landmarks"
    else:
        from artmator.model.faces.analyzer import FaceError, check_face_size

        found = _faces(analyzer(), image)
        if found is None:
            raise FaceError("no_face", task.image_uri, "no face found in the whole painting; give the row a crop "
                            "or face_align (artmator prepare writes them), or check the image")
        face, count = found
        check_face_size(face, analyzer().config, task.image_uri)
        alignment = face.alignment
        facts = dict(alignment_source="detected" if face.landmarks_reliable else "detected_box",
                     face_confidence=face.confidence, faces_found=count)
        if yaw is None and face.landmarks_reliable:
            yaw, pitch, pose_source = face.pose.yaw_deg, face.pose.pitch_deg, "landmarks"
    tensor = prepare_painting(image, resolution, crop, image_config, source=task.image_uri, alignment=alignment,
                              framing=framing)
    used = None if alignment is None else {k: float(v) for k, v in asdict(alignment).items()}
    return (PaintingInput(task.painting_id, tensor, yaw, pitch),
            FaceInput(pose_source=pose_source, alignment=used, **facts))


def _faces(analyzer, image):
    """(main face in `image`'s pixels, faces found) from an analysis at most ANALYSIS_SIDE large, or None."""
    reduced = image
    if max(image.size) > ANALYSIS_SIDE:
        reduced = image.copy()
        reduced.thumbnail((ANALYSIS_SIDE, ANALYSIS_SIDE))
    faces = analyzer.faces(reduced)
    if not faces:
        return None
    return faces[0].scaled(image.size[0] / reduced.size[0]), len(faces)


class Lazy:
    """A model built on first call and kept for the process (rows that never need it never load it)."""

    def __init__(self, factory: Callable[[], object]):
        self.factory = factory
        self._model = None

    def __call__(self):
        if self._model is None:
            self._model = self.factory()
        return self._model


class LazyFaceAnalyzer(Lazy):
    """The process's FaceAnalyzer (detector + landmarks), built on first use."""

    def __init__(self, device: str = "cpu"):
        def build():
            from artmator.model.faces.analyzer import FaceAnalyzer

            return FaceAnalyzer(device=device)

        super().__init__(build)


def face_scorer(device: str = "cpu") -> Lazy:
    """The process's FaceScorer (face-aware render metrics), built on first use."""
    def build():
        from artmator.model.faces.metrics import FaceScorer

        return FaceScorer(device=device)

    return Lazy(build)
