"""Alignment and pose from landmarks: geometry with known answers (projected templates at known poses)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from artmator.model.anifacegan import rays
from artmator.model.camera import degrees_to_official
from artmator.model.faces.align import (FACE_TEMPLATE_5, PITCH_OFFSET_DEG, FaceAlignment, FaceFraming, align_face,
                                        five_points, pose_from_landmarks, warp_aligned)

FOV = 12.0
RES = 256
# The template placed in the backbone's world: eyes ~0.055 apart, facing the camera that sits at pitch
# PITCH_OFFSET_DEG (AniFaceGAN's offset between Deep3DFaceRecon's angles and its own).
_K = 2 * math.tan(math.radians(FOV) / 2) / (224 / 95)   # the template scale the training crop implies


def world_template() -> torch.Tensor:
    a = math.radians(PITCH_OFFSET_DEG)
    # Rotate about x so the template's +z becomes (0, -sin a, cos a).
    rot = torch.tensor([[1.0, 0.0, 0.0], [0.0, math.cos(a), -math.sin(a)], [0.0, math.sin(a), math.cos(a)]],
                       dtype=torch.float64)
    return (torch.from_numpy(FACE_TEMPLATE_5) * _K) @ rot.T


def projected(yaw_deg: float, pitch_deg: float, res: int = RES) -> np.ndarray:
    pts = rays.project_points(world_template().float(), degrees_to_official(yaw_deg), degrees_to_official(pitch_deg),
                              res, FOV)
    return pts.numpy().astype(np.float64)


def mirrored(points5: np.ndarray, width: int) -> np.ndarray:
    m = points5.copy()
    m[:, 0] = width - m[:, 0]
    return m[[1, 0, 2, 4, 3]]                                   # left and right swap names in a mirror


def rolled(points: np.ndarray, angle_deg: float, centre) -> np.ndarray:
    a = math.radians(angle_deg)   # counter-clockwise on screen (y down)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    return (points - centre) @ rot.T + centre


@pytest.mark.parametrize("yaw,pitch", [(0, 0), (20, 0), (-20, 0), (0, 10), (0, -10), (25, -8), (-30, 12)])
def test_pose_of_a_projected_template(yaw, pitch):
    pose = pose_from_landmarks(projected(yaw, pitch))
    assert pose.yaw_deg == pytest.approx(yaw, abs=1.0)
    assert pose.pitch_deg == pytest.approx(pitch, abs=1.0)
    assert pose.roll_deg == pytest.approx(0.0, abs=0.5)


@pytest.mark.parametrize("yaw,pitch", [(15, 0), (-25, 5), (35, -10)])
def test_a_mirror_image_gets_the_opposite_yaw(yaw, pitch):
    p = projected(yaw, pitch)
    a, b = pose_from_landmarks(p), pose_from_landmarks(mirrored(p, RES))
    assert b.yaw_deg == pytest.approx(-a.yaw_deg, abs=0.5)
    assert b.pitch_deg == pytest.approx(a.pitch_deg, abs=0.5)
    assert a.yaw_deg * b.yaw_deg < 0


def test_positive_yaw_turns_the_nose_to_the_viewers_right():
    # The project's convention (model/camera.py): positive yaw turns the head towards the viewer's right.
    nose_frontal, nose_turned = projected(0, 0)[2, 0], projected(20, 0)[2, 0]
    assert nose_turned > nose_frontal
    assert pose_from_landmarks(projected(20, 0)).yaw_deg > 0


@pytest.mark.parametrize("roll", [-30.0, -10.0, 15.0, 40.0])
def test_roll_is_undone_and_does_not_change_pose_or_scale(roll):
    p = projected(10, 5)
    q = rolled(p, roll, p.mean(0))
    a, b = align_face(p), align_face(q)
    assert b.angle_deg == pytest.approx(a.angle_deg + roll, abs=1e-6)
    assert b.size == pytest.approx(a.size, rel=1e-6)
    # The rolled crop's centre is the upright one's centre rolled about the same point.
    c = rolled(np.array([[a.cx, a.cy]]), roll, p.mean(0))[0]
    assert (b.cx, b.cy) == pytest.approx(tuple(c), abs=1e-6)
    pb = pose_from_landmarks(q)
    assert pb.yaw_deg == pytest.approx(pose_from_landmarks(p).yaw_deg, abs=1e-3)
    assert pb.roll_deg == pytest.approx(pose_from_landmarks(p).roll_deg + roll, abs=1e-4)


def test_crop_follows_gram_scale_and_centre():
    # A face twice as large in the image gets a crop twice as large, centred on the same template point.
    p = projected(0, 0)
    big = (p - RES / 2) * 2 + RES / 2
    a, b = align_face(p), align_face(big)
    assert b.size == pytest.approx(2 * a.size, rel=1e-9)
    assert (b.cx - RES / 2, b.cy - RES / 2) == pytest.approx((2 * (a.cx - RES / 2), 2 * (a.cy - RES / 2)), abs=1e-6)
    # GRAM: side = 224/95 · s with s the mean norm of the fitted projection rows.
    eye_px = np.linalg.norm(p[1] - p[0])
    eye_units = np.linalg.norm(FACE_TEMPLATE_5[1, :2] - FACE_TEMPLATE_5[0, :2])
    assert a.size == pytest.approx(224 / 95 * eye_px / eye_units, rel=0.03)


def test_five_points_from_68():
    lm = np.zeros((68, 2))
    lm[36], lm[39], lm[42], lm[45] = (10, 20), (20, 20), (40, 22), (50, 22)
    lm[30], lm[48], lm[54] = (30, 35), (18, 50), (42, 50)
    np.testing.assert_allclose(five_points(lm), [[15, 20], [45, 22], [30, 35], [18, 50], [42, 50]])
    with pytest.raises(ValueError, match="68, 2"):
        five_points(np.zeros((10, 2)))


def _dots(size: int, centres: np.ndarray) -> Image.Image:
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    img = np.zeros((size, size), np.float64)
    for cx, cy in centres:
        img += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 2.0 ** 2))
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).convert("RGB")


def _peak(img: np.ndarray, near: np.ndarray, radius: int = 6) -> np.ndarray:
    x0, y0 = np.round(near).astype(int)
    win = img[y0 - radius:y0 + radius + 1, x0 - radius:x0 + radius + 1].astype(np.float64)
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    w = win / win.sum()
    return np.array([x0 + (w * xx).sum(), y0 + (w * yy).sum()])


@pytest.mark.parametrize("angle", [0.0, 25.0, -40.0])
def test_warp_puts_source_points_where_to_crop_says(angle):
    al = FaceAlignment(cx=300.0, cy=260.0, size=240.0, angle_deg=angle)
    targets = np.array([[40.0, 40.0], [88.0, 40.0], [64.0, 90.0]])          # in a 128² crop
    src = al.to_source(targets, 128)
    out = np.asarray(warp_aligned(_dots(600, src), al, 128))[..., 0]
    for t in targets:
        assert np.linalg.norm(_peak(out, t) - t) < 0.6
    np.testing.assert_allclose(al.to_crop(src, 128), targets, atol=1e-9)


def test_warp_mirrors_beyond_the_border_and_bounds_work_for_huge_scans():
    img = Image.new("RGB", (4000, 3000), (200, 100, 50))
    out = warp_aligned(img, FaceAlignment(cx=100.0, cy=100.0, size=1600.0), 64)    # mostly outside: mirrored
    assert out.size == (64, 64)
    assert np.abs(np.asarray(out).astype(int) - (200, 100, 50)).max() <= 1


def test_the_aligned_crop_of_a_backbone_render_is_the_frame_the_backbone_renders():
    """The demo backbone is fitted to the procedural head, rendered with the backbone's own camera: widening the
    face's training crop by the backbone's declared framing (`Backbone.face_framing`) must give back (about)
    the render's own frame — so a painting's face lands where the backbone renders faces."""
    from artmator.model import load_backbone
    from artmator.model.faces.analyzer import FaceAnalysisConfig, FaceAnalyzer
    from artmator.model.anifacegan.demo_prior import reference_render

    framing = load_backbone("tiny").face_framing
    analyzer = FaceAnalyzer(FaceAnalysisConfig(min_confidence=0.1))
    for yaw in (-15.0, 0.0, 15.0):
        image, _ = reference_render(yaw, RES)                                        # (3, H, W) in [0, 1]
        pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        faces = analyzer.faces(pixels)
        assert faces, f"no face found in the head render at yaw {yaw}"
        a = framing.window_for(faces[0].alignment)
        assert abs(a.cx - RES / 2) < 0.05 * RES and abs(a.cy - RES / 2) < 0.05 * RES, (yaw, a)
        assert 0.92 * RES < a.size < 1.08 * RES and abs(a.angle_deg) < 5, (yaw, a)
        assert np.sign(faces[0].pose.yaw_deg) == np.sign(yaw) or yaw == 0


def test_a_framing_widens_the_window_around_the_face_where_it_says():
    face = FaceAlignment(cx=100.0, cy=200.0, size=50.0, angle_deg=0.0)
    assert FaceFraming().window_for(face) == face and FaceFraming().is_identity
    w = FaceFraming(scale=0.5, cx=0.5, cy=0.25).window_for(face)
    assert (w.size, w.cx, w.cy) == (100.0, 100.0, 225.0)     # the face sits in the upper half of the window
    # Where the window puts the face, read back through the warp geometry: its centre at (0.5, 0.25) x R.
    centre = w.to_crop(np.array([[100.0, 200.0]]), 64)[0] + 0.5
    np.testing.assert_allclose(centre, [32.0, 16.0], atol=1e-9)
    tilted = FaceAlignment(cx=100.0, cy=200.0, size=50.0, angle_deg=30.0)
    wt = FaceFraming(scale=0.5, cx=0.3, cy=0.7).window_for(tilted)
    np.testing.assert_allclose(wt.to_crop(np.array([[100.0, 200.0]]), 64)[0] + 0.5, [0.3 * 64, 0.7 * 64], atol=1e-9)
    assert wt.angle_deg == 30.0


def test_a_framing_outside_the_frame_is_refused():
    with pytest.raises(ValueError, match="framing"):
        FaceFraming(scale=0.0)
    with pytest.raises(ValueError, match="framing"):
        FaceFraming(cx=1.5)
