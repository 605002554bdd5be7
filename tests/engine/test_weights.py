"""Pretrained weights offline: the weights folder + manifest round trip (a locally made file, no network),
configs reading it through ${KAGGLE_KIT_WEIGHTS:-weights}, and the loud warning when the file is missing."""
import hashlib
import json
import subprocess
import sys

import pytest
import torch

from kaggle_kit.config import load_config
from kaggle_kit.engine.weights import (WeightSpec, expand, resolve_weights_path, save_weights, spec_from_path,
                                       specs_in_configs, verify_weights)

from tests.conftest import ROOT

TEMPLATE = "${KAGGLE_KIT_WEIGHTS:-weights}/timm/resnet10t.safetensors"


def test_expand_follows_the_shell_rule(monkeypatch):
    monkeypatch.delenv("KAGGLE_KIT_WEIGHTS", raising=False)
    assert expand(TEMPLATE) == "weights/timm/resnet10t.safetensors"
    monkeypatch.setenv("KAGGLE_KIT_WEIGHTS", "")
    assert expand(TEMPLATE) == "weights/timm/resnet10t.safetensors"  # empty counts as unset with :-
    monkeypatch.setenv("KAGGLE_KIT_WEIGHTS", "/kaggle/input/w")
    assert expand(TEMPLATE) == "/kaggle/input/w/timm/resnet10t.safetensors"
    assert expand("${KAGGLE_KIT_WEIGHTS}/a") == "/kaggle/input/w/a"
    assert expand("$HOME/x ~/y") == "$HOME/x ~/y"  # only ${...} forms


def test_spec_from_path():
    assert spec_from_path(TEMPLATE) == WeightSpec("timm", "resnet10t")
    assert spec_from_path("${KAGGLE_KIT_WEIGHTS:-weights}/smp/efficientnet-b1.safetensors") == \
        WeightSpec("smp", "efficientnet-b1")
    assert spec_from_path("/data/my.pth") is None and spec_from_path(None) is None
    with pytest.raises(ValueError, match="expected <timm|smp>"):
        spec_from_path("${KAGGLE_KIT_WEIGHTS:-weights}/hub/x.pth")


def test_gpu_configs_name_their_own_encoder():
    """Every GPU config reads ImageNet weights from the folder, and the file is the encoder it builds."""
    paths = [p for p in sorted((ROOT / "configs").glob("*/*.yaml")) if p.parent.name not in ("ensemble", "presets")]
    found = specs_in_configs(paths)
    by_cfg = {c.split("configs/")[-1]: s for s, cs in found.items() for c in cs}
    assert set(by_cfg) == {"cls/gpu_effnet_b2.yaml", "seg25d/public_baseline.yaml",
                           "seg25d/unetpp_convnext_512.yaml", "seg25d/upernet_mmseg_convnext_448.yaml"}
    for rel, spec in by_cfg.items():
        m = load_config(ROOT / "configs" / rel)["model"]
        if m.get("backbone"):  # cls: a timm model
            assert spec == WeightSpec("timm", m["backbone"]), rel
        elif m.get("backend") == "mmseg":  # timm backbone through mmseg's TIMMBackbone
            assert spec == WeightSpec("timm", m["encoder_name"].removeprefix("tu-")), rel
        elif m["encoder_name"].startswith("tu-"):
            assert spec == WeightSpec("timm", m["encoder_name"][3:]), rel
        else:  # smp's own encoder
            assert spec == WeightSpec("smp", m["encoder_name"]), rel
    for p in paths:  # CPU presets and defaults stay random on purpose
        if "gpu" not in p.stem and p.stem not in ("public_baseline", "unetpp_convnext_512",
                                                  "upernet_mmseg_convnext_448"):
            assert load_config(p)["model"].get("weights_path") is None, p


def _noisy_timm(name):
    """fetch stand-in: a timm model's state dict with every float tensor moved off its init (so equality
    after loading can only come from the file)."""
    def fetch(spec):
        import timm

        assert spec == WeightSpec("timm", name)
        torch.manual_seed(0)
        sd = timm.create_model(name).state_dict()
        sd = {k: (v + torch.randn_like(v)) if v.is_floating_point() else v for k, v in sd.items()}
        fetch.sd = sd
        return sd, {"source": "test: locally made", "license": "apache-2.0"}
    return fetch


def _matched(model_sd, file_sd, prefixes):
    """(equal, compared) over file tensors that have a model key ``prefix + key`` of the same shape."""
    eq = n = 0
    for k, v in file_sd.items():
        for p in prefixes:
            if p + k in model_sd and model_sd[p + k].shape == v.shape:
                n += 1
                eq += bool(torch.equal(model_sd[p + k], v))
    return eq, n


def test_weights_round_trip_through_configs(tmp_path, monkeypatch, capsys):
    out = tmp_path / "w"
    fetch = _noisy_timm("resnet10t")
    man = save_weights([WeightSpec("timm", "resnet10t")], out, fetch=fetch)
    f = out / "timm/resnet10t.safetensors"
    entry = json.loads((out / "manifest.json").read_text())["files"]["timm/resnet10t.safetensors"]
    assert entry == man["files"]["timm/resnet10t.safetensors"]
    assert entry["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert entry["source"] == "test: locally made" and entry["license"] == "apache-2.0"
    assert entry["tensors"] == len(fetch.sd) and verify_weights(out) == []
    # a second run keeps the file (sha256 matches) without fetching
    save_weights([WeightSpec("timm", "resnet10t")], out, fetch=lambda s: pytest.fail("fetched again"))

    monkeypatch.setenv("KAGGLE_KIT_WEIGHTS", str(out))
    from kaggle_kit.families.cls.model import build_net as cls_net
    from kaggle_kit.families.seg25d.train import build_net as seg_net

    cls_cfg = load_config(ROOT / "configs/cls/tiny_cpu.yaml", [f"model.weights_path={TEMPLATE}"])
    eq, n = _matched(cls_net(cls_cfg["model"], 3).state_dict(), fetch.sd, ["", "backbone."])
    assert n == len(fetch.sd) - 2 and eq == n, (eq, n)  # all but the 1000-class fc
    seg_cfg = load_config(ROOT / "configs/seg25d/tiny_cpu.yaml",
                          ["model.encoder_name=tu-resnet10t", f"model.weights_path={TEMPLATE}"])
    eq, n = _matched(seg_net(seg_cfg["model"], 3).state_dict(), fetch.sd, ["encoder.model."])
    assert n == len(fetch.sd) - 2 and eq == n, (eq, n)
    assert "WARNING" not in capsys.readouterr().err

    f.write_bytes(f.read_bytes()[:-8] + b"corrupt!")
    assert verify_weights(out) == [f"{f}: sha256 differs from manifest.json (corrupt or replaced)"]


def test_missing_weights_file_warns_loudly_and_trains_random(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KAGGLE_KIT_WEIGHTS", str(tmp_path / "empty"))
    from kaggle_kit.families.seg25d.train import build_net

    cfg = load_config(ROOT / "configs/seg25d/tiny_cpu.yaml",
                      ["model.encoder_name=tu-resnet10t", f"model.weights_path={TEMPLATE}"])
    net = build_net(cfg["model"], 3)  # still builds: random init
    assert sum(p.numel() for p in net.parameters()) > 0
    err = capsys.readouterr().err
    assert f"pretrained weights file not found: {tmp_path / 'empty' / 'timm/resnet10t.safetensors'}" in err
    assert "RANDOM weights" in err and f"python tools/fetch_weights.py --out {tmp_path / 'empty'}" in err
    assert err.count("!" * 100) == 2
    # random init on purpose: no warning; inference (load_weights=False) never looks at the file
    build_net(dict(cfg["model"], weights_path=None), 3)
    build_net(cfg["model"], 3, load_weights=False)
    assert capsys.readouterr().err == ""
    # a literal path that does not exist is still an error, not a silent random init
    with pytest.raises(FileNotFoundError):
        build_net(dict(cfg["model"], weights_path=str(tmp_path / "typo.pth")), 3)
    assert resolve_weights_path(None) is None


def test_fetch_weights_tool_list_and_verify(tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / "tools/fetch_weights.py"), "--list"], capture_output=True,
                       text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    files = {json.loads(line)["file"] for line in p.stdout.splitlines()}
    assert files == {"timm/efficientnet_b2.safetensors", "smp/efficientnet-b1.safetensors",
                     "timm/convnext_small.safetensors", "timm/convnext_tiny.safetensors"}
    save_weights([WeightSpec("timm", "resnet10t")], tmp_path / "w", fetch=_noisy_timm("resnet10t"))
    (tmp_path / "w/timm/resnet10t.safetensors").unlink()
    p = subprocess.run([sys.executable, str(ROOT / "tools/fetch_weights.py"), "--verify", str(tmp_path / "w")],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 1 and "listed in manifest.json but missing" in p.stdout


def test_smp_encoder_weights_round_trip(tmp_path, monkeypatch):
    """An smp-own encoder (the public baseline's kind): smp/<name>.safetensors loads into model.encoder."""
    import segmentation_models_pytorch as smp

    def fetch(spec):
        assert spec == WeightSpec("smp", "resnet18")
        torch.manual_seed(1)
        sd = smp.encoders.get_encoder("resnet18", in_channels=3, depth=5, weights=None).state_dict()
        fetch.sd = {k: (v + torch.randn_like(v)) if v.is_floating_point() else v for k, v in sd.items()}
        return fetch.sd, {"source": "test: locally made", "license": "unknown"}

    save_weights([WeightSpec("smp", "resnet18")], tmp_path / "w", fetch=fetch)
    monkeypatch.setenv("KAGGLE_KIT_WEIGHTS", str(tmp_path / "w"))
    from kaggle_kit.families.seg25d.train import build_net

    cfg = load_config(ROOT / "configs/seg25d/tiny_cpu.yaml", [
        "model.encoder_name=resnet18", "model.weights_path=${KAGGLE_KIT_WEIGHTS:-weights}/smp/resnet18.safetensors"])
    eq, n = _matched(build_net(cfg["model"], 3).state_dict(), fetch.sd, ["encoder."])
    assert n == len(fetch.sd) and eq == n, (eq, n)
