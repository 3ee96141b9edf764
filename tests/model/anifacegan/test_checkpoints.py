"""Official checkpoints load strictly; bad weight files give errors naming the part, key and shapes."""
from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from artmator.model import WeightsError, load_backbone
from artmator.model.anifacegan.model import build_parts
from artmator.model.anifacegan.config import preset_config


@pytest.fixture(scope="module")
def shapes(anifacegan_fixtures):
    return json.loads((anifacegan_fixtures / "state_dict_shapes.json").read_text())


@pytest.mark.parametrize("part", ["generator", "deform", "vae_id", "vae_exp"])
def test_parameter_names_and_shapes_equal_official(shapes, part):
    module = build_parts(preset_config("anifacegan"))[part]
    ours = {k: list(v.shape) for k, v in module.state_dict().items()}
    assert ours == shapes[part]


def test_shared_dif_pth_and_generator_safetensors_load_strictly(anifacegan_fixtures):
    b = load_backbone("anifacegan", weights={
        "generator": str(anifacegan_fixtures / "generator_random_seed0.safetensors"),
        "deform": str(anifacegan_fixtures / "dif.pth"),
    })
    official = torch.load(anifacegan_fixtures / "dif.pth", map_location="cpu", weights_only=True)
    for k, v in official.items():
        assert torch.equal(b.deform.state_dict()[k], v)


@pytest.mark.parametrize("part", ["generator", "vae_id", "vae_exp"])
def test_official_style_pth_of_every_part_loads_strictly(tmp_path, shapes, part):
    # A plain torch.save of a state dict with exactly the official names and shapes (as the official files are).
    g = torch.Generator().manual_seed(1)
    state = {k: torch.randn(s, generator=g) for k, s in shapes[part].items()}
    path = tmp_path / f"{part}.pth"
    torch.save(state, path)
    b = load_backbone("anifacegan", weights={part: str(path)})
    for k, v in state.items():
        assert torch.equal(b.part(part).state_dict()[k], v)


def test_torch_ema_checkpoint_loads_as_generator(tmp_path, shapes):
    # ema.pth from torch_ema: {"decay", "num_updates", "shadow_params": [tensors in parameters() order], ...}
    module = build_parts(preset_config("anifacegan"))["generator"]
    shadow = [torch.full_like(p, i * 0.001) for i, p in enumerate(module.parameters())]
    path = tmp_path / "ema.pth"
    torch.save({"decay": 0.999, "num_updates": 10, "shadow_params": shadow, "collected_params": None}, path)
    b = load_backbone("anifacegan", weights={"generator": str(path)})
    for p, s in zip(b.generator.parameters(), shadow):
        assert torch.equal(p, s)


def test_loads_through_fsspec_uri(anifacegan_fixtures):
    uri = "file://" + str(anifacegan_fixtures / "dif.pth")
    load_backbone("anifacegan", weights={"deform": uri})


def test_wrong_shape_names_part_key_and_both_shapes(tmp_path, shapes):
    state = {k: torch.zeros(s) for k, s in shapes["deform"].items()}
    state["final_layer.weight"] = torch.zeros(3, 128)
    path = tmp_path / "dif.safetensors"
    save_file(state, str(path))
    with pytest.raises(WeightsError) as e:
        load_backbone("anifacegan", weights={"deform": str(path)})
    msg = str(e.value)
    assert "deform" in msg and "final_layer.weight" in msg and "(3, 128)" in msg and "(7, 128)" in msg


def test_missing_and_unexpected_keys_are_listed(tmp_path, shapes):
    state = {k: torch.zeros(s) for k, s in shapes["deform"].items()}
    del state["final_layer.bias"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "dif.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"missing keys \[final_layer.bias\].*unexpected keys \[extra.weight\]"):
        load_backbone("anifacegan", weights={"deform": str(path)})


def test_official_weights_do_not_fit_tiny_preset(anifacegan_fixtures):
    with pytest.raises(WeightsError, match="generator.*shape mismatch"):
        load_backbone("tiny", weights={"generator": str(anifacegan_fixtures / "generator_random_seed0.safetensors")})


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/artmator_pwned_marker",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"final_layer.weight": _RunsCode()}, path)
    if os.path.exists("/tmp/artmator_pwned_marker"):
        os.remove("/tmp/artmator_pwned_marker")
    with pytest.raises(WeightsError, match="deform.*refused"):
        load_backbone("anifacegan", weights={"deform": str(path)})
    assert not os.path.exists("/tmp/artmator_pwned_marker")


def test_raw_pickle_protocol_file_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_RunsCode()))
    with pytest.raises(WeightsError, match="vae_id"):
        load_backbone("anifacegan", weights={"vae_id": str(path)})
    assert not os.path.exists("/tmp/artmator_pwned_marker")


def test_truncated_file_is_reported(tmp_path, anifacegan_fixtures):
    data = (anifacegan_fixtures / "dif.pth").read_bytes()
    path = tmp_path / "dif.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="deform.*truncated"):
        load_backbone("anifacegan", weights={"deform": str(path)})


def test_truncated_safetensors_is_reported(tmp_path, anifacegan_fixtures):
    data = (anifacegan_fixtures / "generator_random_seed0.safetensors").read_bytes()
    path = tmp_path / "g.safetensors"
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(WeightsError, match="generator.*safetensors"):
        load_backbone("anifacegan", weights={"generator": str(path)})


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError, match="vae_exp.*empty"):
        load_backbone("anifacegan", weights={"vae_exp": str(empty)})
    with pytest.raises(WeightsError, match="does not exist"):
        load_backbone("anifacegan", weights={"vae_exp": str(tmp_path / "nope.pth")})


def test_unknown_part_and_preset():
    with pytest.raises(ValueError, match="unknown weight parts"):
        load_backbone("tiny", weights={"discriminator": "x.pth"})
    with pytest.raises(ValueError, match="unknown preset"):
        load_backbone("huge")


def test_non_tensor_content_is_refused(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(WeightsError, match="state dict"):
        load_backbone("anifacegan", weights={"deform": str(path)})
