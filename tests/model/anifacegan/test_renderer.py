"""`at_hits` / `radiance_at_hits`: work only where a ray hits a manifold, the fill (zeros) elsewhere."""
from __future__ import annotations

import torch

from artmator.model.anifacegan.renderer import at_hits, radiance_at_hits


def toy_radiance(calls: list[int]):
    """(B, N, 3) points, (B, N or 1, 3) views -> (B, N, 4); records how many points each call saw."""
    def radiance(points, view):
        calls.append(points.shape[1])
        return torch.cat([points + view, points.sum(-1, keepdim=True) + 1], dim=-1)
    return radiance


def test_hits_get_the_field_and_empty_slots_zeros_with_uneven_frames():
    g = torch.Generator().manual_seed(0)
    points, view = torch.randn(3, 10, 3, generator=g), torch.randn(3, 10, 3, generator=g)
    hit = torch.rand(3, 10, generator=g) < 0.4
    hit[2] = False                                    # a frame with no hit at all
    hit[0, :7] = True                                 # the largest count sets the packed width
    calls: list[int] = []
    out = radiance_at_hits(toy_radiance(calls), points, hit, view)
    full = toy_radiance([])(points, view)
    assert calls == [int(hit.sum(1).max())]           # one call on the packed points only
    assert torch.equal(out[hit], full[hit])
    assert torch.equal(out[~hit], torch.zeros_like(out[~hit]))


def test_one_view_per_frame_is_broadcast_not_gathered():
    points, view = torch.randn(2, 6, 3), torch.randn(2, 1, 3)
    hit = torch.tensor([[True, False, True, False, False, False], [False] * 5 + [True]])
    out = radiance_at_hits(toy_radiance([]), points, hit, view)
    assert torch.equal(out[hit], toy_radiance([])(points, view)[hit])


def test_all_hits_is_the_plain_call():
    points, view = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    calls: list[int] = []
    out = radiance_at_hits(toy_radiance(calls), points, torch.ones(2, 5, dtype=torch.bool), view)
    assert calls == [5] and torch.equal(out, toy_radiance([])(points, view))


def test_gradients_reach_only_the_hit_points():
    points = torch.randn(2, 8, 3, requires_grad=True)
    hit = torch.zeros(2, 8, dtype=torch.bool)
    hit[0, [1, 4]] = True
    hit[1, 7] = True
    radiance_at_hits(toy_radiance([]), points, hit, torch.zeros(2, 1, 3)).sum().backward()
    assert torch.equal(points.grad[hit], torch.full((3, 3), 2.0))    # d/dp of (p + v) summed, plus of p.sum()
    assert torch.equal(points.grad[~hit], torch.zeros(13, 3))


def test_a_chunk_without_any_hit_is_all_fill_and_still_differentiable():
    weight = torch.ones(3, 2, requires_grad=True)
    fill = torch.full((2, 4, 2), 7.0)
    out = at_hits(lambda x: x @ weight, torch.randn(2, 4, 3), torch.zeros(2, 4, dtype=torch.bool), fill)
    assert torch.equal(out, fill)
    out.sum().backward()
    assert torch.equal(weight.grad, torch.zeros(3, 2))
