"""Configs that inherit: a config names its parent and holds only what differs; resolved, every
config is exactly what it was as a full copy (tests/data/configs_resolved.json, taken before
the configs were rewritten)."""
import json

import pytest
import yaml

from imfcodec.config import ConfigError, load_yaml

from conftest import REPO

SNAPSHOT = json.loads((REPO / "tests/data/configs_resolved.json").read_text())


@pytest.mark.parametrize("rel", sorted(SNAPSHOT))
def test_resolved_config_is_unchanged(rel):
    assert load_yaml(REPO / rel) == SNAPSHOT[rel]


def test_every_config_is_in_the_snapshot():
    found = {str(p.relative_to(REPO)) for p in (REPO / "configs").rglob("*.yaml")}
    found |= {str(p.relative_to(REPO)) for p in (REPO / "imfcodec/weights").glob("*.yaml")}
    assert found == set(SNAPSHOT)


def test_shipped_model_yamls_are_self_contained():
    """They ship in the wheel, configs/ does not: no parent."""
    for p in (REPO / "imfcodec/weights").glob("*.yaml"):
        assert "parent" not in yaml.safe_load(p.read_text()), p


def test_stage_configs_hold_only_differences():
    for name in ("imf-cpu-base-l1", "imf-cpu-base-px", "imf-cpu-base-pxj", "imf-cpu-base-pxg", "imf-cpu-base-q"):
        raw = yaml.safe_load((REPO / f"configs/train/{name}.yaml").read_text())
        assert "parent" in raw and len(raw) <= 6, name


def test_stages_file_names_every_stage_config():
    text = (REPO / "configs/train/STAGES.md").read_text()
    for name in ("imf-cpu-base", "imf-cpu-base-l1", "imf-cpu-base-px", "imf-cpu-base-pxj", "imf-cpu-base-pxg"):
        assert f"--config configs/train/{name}.yaml" in text
        assert (REPO / f"configs/train/{name}.yaml").is_file()


def test_parent_deep_merges_and_paths_follow_their_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "base.yaml").write_text("model: ../model/m.yaml\na: 1\nd: {x: 1, y: {p: 1, q: 2}}\nl: [1, 2]\n")
    (tmp_path / "child.yaml").write_text("parent: base.yaml\nd: {y: {q: 3}, z: 4}\nl: [3]\n")
    (tmp_path / "sub/far.yaml").write_text("parent: ../child.yaml\na: 2\n")
    assert load_yaml(tmp_path / "child.yaml") == {
        "model": "../model/m.yaml", "a": 1, "d": {"x": 1, "y": {"p": 1, "q": 3}, "z": 4}, "l": [3]}
    far = load_yaml(tmp_path / "sub/far.yaml")
    assert far["a"] == 2 and far["model"] == "../../model/m.yaml"


def test_parent_cycle_and_missing_parent_are_one_error(tmp_path):
    (tmp_path / "a.yaml").write_text("parent: b.yaml\nx: 1\n")
    (tmp_path / "b.yaml").write_text("parent: a.yaml\ny: 2\n")
    with pytest.raises(ConfigError, match="parent cycle"):
        load_yaml(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("parent: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"parent config 'nowhere.yaml' not found"):
        load_yaml(tmp_path / "c.yaml")
    (tmp_path / "self.yaml").write_text("parent: self.yaml\n")
    with pytest.raises(ConfigError, match="parent cycle"):
        load_yaml(tmp_path / "self.yaml")
