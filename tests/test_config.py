from pathlib import Path

import pytest

from kaggle_kit.config import ConfigError, apply_overrides, load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if p.parent.name not in ("ensemble", "presets") and p.parent != ROOT / "configs")


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT / "configs")) for p in CONFIGS])
def test_every_shipped_config_validates(path):
    cfg = load_config(path)
    assert cfg["family"] == path.parent.name


def test_base_and_overrides():
    cfg = load_config(ROOT / "configs/seg25d/tiny_cpu.yaml", ["train.epochs=7", "data.size=[64, 64]", "model.arch=unetplusplus"])
    assert cfg["train"]["epochs"] == 7 and cfg["data"]["size"] == [64, 64]
    assert cfg["model"]["arch"] == "unetplusplus"
    assert cfg["train"]["optimizer"] == "adamw"  # inherited from default.yaml


@pytest.mark.parametrize("ov, msg", [
    ("train.epoch=3", "did you mean 'train.epochs'"),
    ("train.epochs=three", "must be int"),
    ("train.lr=true", "must be float"),
    ("model=3", "must be a mapping"),
    ("nonsense", "key=value"),
    ("data.size=[1, 2", "does not parse"),
])
def test_bad_overrides_fail_early(ov, msg):
    with pytest.raises(ConfigError, match=msg):
        load_config(ROOT / "configs/seg25d/tiny_cpu.yaml", [ov])


def test_overrides_are_not_evaluated():
    cfg = apply_overrides({"a": {"b": 1}}, ["a.b=__import__('os').system('true')"])
    assert cfg["a"]["b"] == "__import__('os').system('true')"  # a plain string, never run


def test_unknown_key_in_file(tmp_path):
    (tmp_path / "default.yaml").write_text("family: x\ntrain: {epochs: 1}\n")
    (tmp_path / "c.yaml").write_text("_base_: default.yaml\ntrain: {epocs: 2}\n")
    with pytest.raises(ConfigError, match="epocs"):
        load_config(tmp_path / "c.yaml")


def test_torch_families_share_one_train_section():
    """cls, seg25d and seg3d read their train: keys from configs/base_train.yaml (the Runner's defaults too):
    same keys everywhere, and a family overrides only values."""
    import yaml

    from kaggle_kit.config import CONFIG_ROOT, load_config
    from kaggle_kit.engine.runner import train_defaults

    base = yaml.safe_load((CONFIG_ROOT / "base_train.yaml").read_text())["train"]
    assert train_defaults() == base
    for fam in ("cls", "seg25d", "seg3d"):
        cfg = load_config(CONFIG_ROOT / fam / "default.yaml")
        assert set(cfg["train"]) == set(base), fam
    assert load_config(CONFIG_ROOT / "seg25d" / "default.yaml")["train"] == base  # uses every default
    assert load_config(CONFIG_ROOT / "seg3d" / "default.yaml")["train"]["grad_clip"] == 12.0  # its own value
