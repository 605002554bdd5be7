"""Pretrained encoder weights, offline: one folder (uploaded as a Kaggle dataset), a manifest, and the config hook.

Layout of the weights folder (``$KAGGLE_KIT_WEIGHTS``, default ``weights`` relative to the working directory)::

    <root>/manifest.json                {"format": 1, "files": {"timm/convnext_small.safetensors":
                                         {"sha256", "bytes", "tensors", "source", "license", "spec"}, ...}}
    <root>/timm/<timm model>.safetensors   a timm classification model's state dict (timm's own key names)
    <root>/smp/<smp encoder>.safetensors   an smp encoder's state dict (smp's key names)

A GPU config names its file once, relative to that root::

    model:
      weights_path: ${KAGGLE_KIT_WEIGHTS:-weights}/timm/convnext_small.safetensors

:func:`resolve_weights_path` expands ``${VAR:-default}`` / ``${VAR}`` when the model is built for training;
a file under such a template that does not exist prints a LOUD warning naming the file and the command that
makes it, and the model trains from random weights. ``model.weights_path=null`` is random init on purpose
(no warning). The files load through the families' own loaders (``seg25d.model.load_weights``,
``load_mmseg_weights``, timm's ``pretrained_cfg_overlay`` for the classifier): timm files map onto
``tu-`` / mmseg timm backbones, smp files onto smp's own encoders.

:func:`save_weights` is what ``tools/fetch_weights.py`` runs on a machine with internet: it asks timm / smp
for each encoder's pretrained weights (their hubs) and writes the files and the manifest. Its ``fetch``
argument is injectable, so the round trip is tested here with locally made weights. Nothing in this module
downloads at import time or when training.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from kaggle_kit.utils import atomic_path, atomic_write_json, sha256_file

__all__ = ["ENV", "DEFAULT_ROOT", "TEMPLATE", "WeightSpec", "expand", "resolve_weights_path", "spec_from_path",
           "specs_in_configs", "save_weights", "verify_weights", "FETCHERS"]

log = logging.getLogger(__name__)

ENV = "KAGGLE_KIT_WEIGHTS"
DEFAULT_ROOT = "weights"
TEMPLATE = "${%s:-%s}" % (ENV, DEFAULT_ROOT)
FETCH_COMMAND = "python tools/fetch_weights.py --out {root}"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SOURCES = ("timm", "smp")


def expand(value: str) -> str:
    """``${VAR}`` -> the environment's value ('' when unset); ``${VAR:-default}`` -> the value, or ``default``
    when unset or empty (the shell's rule). Nothing else is touched (no ``~``, no ``$VAR`` without braces)."""
    def sub(m: re.Match) -> str:
        v = os.environ.get(m.group(1), "")
        return v if v or m.group(2) is None else m.group(2)

    return _VAR.sub(sub, value)


@dataclass(frozen=True)
class WeightSpec:
    """One pretrained encoder: ``source`` (``timm`` | ``smp``) and its name there (a timm model name, with an
    optional ``.tag``; an smp encoder name such as ``efficientnet-b1``)."""

    source: str
    name: str

    def __post_init__(self):
        if self.source not in _SOURCES:
            raise ValueError(f"weights source {self.source!r}: expected one of {list(_SOURCES)}")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"weights name {self.name!r}: a timm model or smp encoder name")

    @property
    def relpath(self) -> str:
        """File path inside the weights folder."""
        return f"{self.source}/{self.name}.safetensors"


def spec_from_path(value) -> WeightSpec | None:
    """The :class:`WeightSpec` a ``weights_path`` names when it points into the weights folder
    (``${KAGGLE_KIT_WEIGHTS...}/<source>/<name>.safetensors``); None for anything else."""
    if not isinstance(value, str) or not value.startswith("${" + ENV):
        return None
    rest = value[value.index("}") + 1:].lstrip("/")
    m = re.fullmatch(r"(timm|smp)/([^/]+)\.safetensors", rest)
    if m is None:
        raise ValueError(f"weights_path {value!r}: under ${{{ENV}}} expected <timm|smp>/<name>.safetensors")
    return WeightSpec(m.group(1), m.group(2))


def _loud(lines: list[str]) -> None:
    bar = "!" * 100
    print("\n".join([bar, *lines, bar]), file=sys.stderr, flush=True)


def resolve_weights_path(value, *, what: str = "model.weights_path") -> Path | None:
    """The local file a config's ``weights_path`` names, for building a model to TRAIN.

    ``None`` stays None (random init on purpose). ``${VAR:-default}`` parts are expanded. A templated path
    (the weights folder) whose file is missing prints a loud warning to stderr, naming the file and the
    command that makes it, and returns None: the model trains from random weights. A literal path is
    returned as is (the loader raises FileNotFoundError when it is missing)."""
    if value is None:
        return None
    text = str(value)
    path = Path(expand(text))
    if "${" in text and not path.is_file():
        root = Path(expand(TEMPLATE))
        msg = (f"pretrained weights file not found: {path} ({what} = {text}; "
               f"{ENV}={os.environ.get(ENV) or '(unset: default ' + DEFAULT_ROOT + ')'})")
        log.warning("%s; training from RANDOM weights", msg)
        _loud([f"WARNING: {msg}",
               "  This model now trains from RANDOM weights. Make the file on a machine with internet:",
               f"      {FETCH_COMMAND.format(root=root)}",
               f"  then copy the folder here (or set {ENV} to the folder that has it; on Kaggle the weights",
               "  dataset, e.g. /kaggle/input/<dataset>). model.weights_path=null trains from random weights",
               "  on purpose, without this warning."])
        return None
    return path


def specs_in_configs(paths: Iterable[str | Path]) -> dict[WeightSpec, list[str]]:
    """{spec: [config files]} for every config (``_base_`` resolved) whose ``model.weights_path`` points into
    the weights folder; configs that fail to load raise (a broken config is not silently skipped)."""
    from kaggle_kit.config import load_config

    out: dict[WeightSpec, list[str]] = {}
    for p in sorted(Path(x) for x in paths):
        cfg = load_config(p)
        spec = spec_from_path((cfg.get("model") or {}).get("weights_path"))
        if spec is not None:
            out.setdefault(spec, []).append(str(p))
    return out


# ---------------------------------------------------------------------------------------------------------------
# fetching (network: only tools/fetch_weights.py on a machine with internet calls these)

def _fetch_timm(spec: WeightSpec) -> tuple[dict, dict]:
    import timm

    model = timm.create_model(spec.name, pretrained=True)  # downloads from timm's hub
    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    source = f"timm: {cfg.get('hf_hub_id') or cfg.get('url') or spec.name}"
    return model.state_dict(), {"source": source, "license": cfg.get("license") or "unknown (see the source)"}


def _fetch_smp(spec: WeightSpec) -> tuple[dict, dict]:
    import segmentation_models_pytorch as smp

    settings = smp.encoders.encoders[spec.name]["pretrained_settings"]["imagenet"]
    enc = smp.encoders.get_encoder(spec.name, in_channels=3, depth=5, weights="imagenet")  # downloads
    where = settings.get("repo_id") or settings.get("url") or spec.name
    return enc.state_dict(), {"source": f"smp: {where} (imagenet)",
                              "license": settings.get("license") or "unknown (see the source's model card)"}


#: source -> fetch(spec) -> (state dict name -> tensor, {"source": str, "license": str})
FETCHERS: dict[str, Callable[[WeightSpec], tuple[dict, dict]]] = {"timm": _fetch_timm, "smp": _fetch_smp}


def _read_manifest(root: Path) -> dict:
    p = root / "manifest.json"
    if not p.is_file():
        return {"format": 1, "files": {}}
    man = json.loads(p.read_text())
    if man.get("format") != 1 or not isinstance(man.get("files"), dict):
        raise ValueError(f"{p}: not a weights manifest (format 1 with a 'files' mapping)")
    return man


def save_weights(specs: Iterable[WeightSpec], out: str | Path, *, fetch: Callable | None = None,
                 overwrite: bool = False) -> dict:
    """Write each spec's weights to ``<out>/<source>/<name>.safetensors`` and list it in ``<out>/manifest.json``
    (sha256, bytes, tensors, source, license); returns the manifest.

    ``fetch(spec) -> (state_dict, {"source", "license"})`` defaults to :data:`FETCHERS` (timm / smp hubs:
    needs internet). A file already listed with a matching sha256 is kept unless ``overwrite``. Files and
    the manifest are written atomically; the manifest keeps entries of earlier runs."""
    from safetensors.torch import save_file

    out = Path(out)
    man = _read_manifest(out)
    for spec in specs:
        dst = out / spec.relpath
        old = man["files"].get(spec.relpath)
        if not overwrite and old and dst.is_file() and sha256_file(dst) == old["sha256"]:
            log.info("weights %s: kept (sha256 matches)", dst)
            continue
        sd, info = (fetch or FETCHERS[spec.source])(spec)
        # contiguous copies: safetensors refuses tensors that share storage
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in sd.items()}
        dst.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dst) as tmp:
            save_file(tensors, str(tmp), metadata={"source": str(info["source"]), "license": str(info["license"])})
        man["files"][spec.relpath] = {"sha256": sha256_file(dst), "bytes": dst.stat().st_size, "tensors": len(tensors),
                                      "source": str(info["source"]), "license": str(info["license"]),
                                      "spec": {"source": spec.source, "name": spec.name}}
        atomic_write_json(out / "manifest.json", man)  # after each file: an interrupted run keeps what it made
        log.info("weights %s: %d tensors, %s", dst, len(tensors), info["source"])
    atomic_write_json(out / "manifest.json", man)
    return man


def verify_weights(root: str | Path) -> list[str]:
    """Problems with a weights folder: listed files that are missing or whose sha256 differs (one line each)."""
    root = Path(root)
    problems = []
    for rel, entry in sorted(_read_manifest(root)["files"].items()):
        p = root / rel
        if not p.is_file():
            problems.append(f"{p}: listed in manifest.json but missing")
        elif sha256_file(p) != entry["sha256"]:
            problems.append(f"{p}: sha256 differs from manifest.json (corrupt or replaced)")
    return problems
