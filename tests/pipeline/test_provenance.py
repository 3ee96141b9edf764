"""Model cards: every fact from result.json, catalogue text kept as literal Markdown text, licences never
guessed; the disclosure is one wording everywhere."""
from __future__ import annotations

from artmator.pipeline.provenance import AI_LABEL, DIGITAL_SOURCE_TYPE, glb_extras, md_text, model_card

RESULT = {
    "painting_id": "p-1",
    "metadata": {"title": "# Heading\n<script>alert(1)</script> [link](javascript:x) *bold*", "artist": "A_B",
                 "date": "1503", "rights": "http://rightsstatements.org/vocab/NoC-US/1.0/", "credit_line": None,
                 "source_url": None},
    "provenance": {"image_sha256": "ab" * 32,
                   "base": {"preset": "anifacegan", "seed": 0, "head_prior": False,
                            "weights": {"generator": "cd" * 32, "deform": "ef" * 32}},
                   "backbone": {"preset": "anifacegan"},
                   "settings": {"tune": {"seed": 7, "resolution": 128, "stage1": {"steps": 300},
                                         "stage2": {"steps": 300}, "delta": {"mode": "lora"}}}},
    "base_sha256": "12" * 32,
    "pose": {"yaw_deg": 12.0, "pitch_deg": -3.0, "source": "landmarks"},
    "quality": {"lpips_ref": 0.2, "psnr_ref": 21.5, "flags": ["weak_fit"]},
    "face": {"detected_fraction": 0.9, "identity_consistency": 0.95, "likeness": 0.5, "pose_error_deg": 3.0},
    "mesh": {"file": "mesh.glb", "faces": 1000, "resolution": 128, "morph_targets": {"happiness": {"max_shift": 0.004}}},
    "resolution": 256, "expressions": ["happiness"],
}


def test_model_card_states_every_fact():
    card = model_card(RESULT, "CC-BY-NC-SA-4.0 (official release terms)").decode()
    assert AI_LABEL in card and DIGITAL_SOURCE_TYPE in card
    assert f"Image sha256: `{'ab' * 32}`" in card
    assert f"`deform`: sha256 `{'ef' * 32}`" in card and f"`generator`: sha256 `{'cd' * 32}`" in card
    assert f"`{'12' * 32}`" in card
    assert "Licence of the weights: CC-BY-NC-SA-4.0 (official release terms)" in card
    assert "FFHQ" in card and "CC BY-NC-SA 4.0" in card                # the preset's training data, declared
    assert "AniFaceGAN" in card and "TVCG" in card
    assert "Seed: 7" in card and "stage 1 steps: 300" in card and "1000 faces" in card
    assert "expression morph targets: happiness" in card
    no_morph = {**RESULT, "mesh": {**RESULT["mesh"], "morph_targets": {"error": "no morph_points"}}}
    assert "no expression morph targets (no morph\_points)" in model_card(no_morph).decode()
    assert "LPIPS to the painting (reference view): 0.200" in card and "weak\\_fit" in card
    assert "Intended use and limits" in card


def test_catalogue_text_stays_text_and_unknowns_are_said():
    card = model_card(RESULT).decode()
    title_line = card.splitlines()[0]
    assert "\n" not in title_line and "<script>" not in card and "\\[link\\](javascript:x)" in card
    assert title_line == "# Model card: " + md_text(RESULT["metadata"]["title"])
    assert "Licence of the weights: unknown" in card                   # never guessed
    bare = model_card({"painting_id": "x", "metadata": {}}).decode()   # an old result.json: no provenance
    assert "Image sha256: `unknown`" in bare and "Mesh: none" in bare


def test_glb_extras_are_the_disclosure():
    assert glb_extras()["DigitalSourceType"] == DIGITAL_SOURCE_TYPE and glb_extras()["label"] == AI_LABEL


def test_xmp_packet_is_xml_with_the_iptc_source_type_and_keeps_hostile_text_as_text():
    from tests.pipeline.xmp_reading import xmp_fields

    from artmator.pipeline.provenance import xmp_packet

    hostile = "x</dc:identifier><x:evil/>&amp;\x00\x07\"'<![CDATA[ ]]>\u2028é"
    packet = xmp_packet(hostile)
    assert packet.startswith(b"<?xpacket begin=") and packet.endswith(b'<?xpacket end="r"?>')
    fields = xmp_fields(packet)
    assert fields["DigitalSourceType"] == DIGITAL_SOURCE_TYPE and fields["CreatorTool"] == "artmator"
    assert fields["li"].startswith(AI_LABEL)
    assert fields["identifier"] == "x</dc:identifier><x:evil/>&amp;\"'<![CDATA[ ]]>\u2028é"   # text; NUL/BEL gone
    assert "evil" not in {k for k in fields} and b"<x:evil" not in packet
    assert "identifier" not in xmp_fields(xmp_packet(None))
