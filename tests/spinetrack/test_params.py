import argparse
import json
from dataclasses import fields

import pytest

from spinetrack.errors import InputError
from spinetrack.params import SECTIONS, Params, add_arguments, params_from_args


def test_defaults_follow_field_conventions():
    p = Params()
    assert p.detect.min_protrusion_um == 0.4
    assert p.fates.restore_radius_um == 2.0


def test_roundtrip_through_dict_and_json(tmp_path):
    p = Params().replace(min_protrusion_um=0.6, restore_radius_um=1.5, seed=3)
    assert Params.from_dict(json.loads(p.to_json())) == p
    path = tmp_path / "params.json"
    path.write_text(json.dumps({"params": p.to_dict(), "versions": {}}))
    assert Params.load(path) == p


def test_field_names_are_unique_across_sections_and_documented():
    names = [f.name for cls in SECTIONS.values() for f in fields(cls)]
    assert len(names) == len(set(names))
    for cls in SECTIONS.values():
        for f in fields(cls):
            assert f.metadata.get("help"), f.name
            if f.name.endswith("_um"):
                assert f.metadata["unit"] == "µm", f.name


def test_validation():
    with pytest.raises(InputError, match="min_protrusion_um must be at least 0"):
        Params().replace(min_protrusion_um=-1)
    with pytest.raises(InputError, match="unknown parameter"):
        Params().replace(nonsense=1)
    with pytest.raises(InputError, match="unknown DetectParams"):
        Params.from_dict({"detect": {"bogus": 1}})


def test_cli_options_generated_from_dataclasses():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--min-protrusion-um", "0.5", "--restore-radius", "3"])
    p = params_from_args(args)
    assert p.detect.min_protrusion_um == 0.5
    assert p.fates.restore_radius_um == 3.0
    assert p.link == Params().link
    assert "µm" in parser.format_help()


def test_params_load_errors(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="p.json: is not a valid JSON"):
        Params.load(bad)
    with pytest.raises(InputError, match="no such file"):
        Params.load(tmp_path / "missing.json")
