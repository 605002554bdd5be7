"""Make the process offline-safe before any heavy library is imported.

``setup_offline()`` sets the environment variables that stop ultralytics, albumentations, Hugging Face
and timm from reaching the network, redirects their config/cache folders into one folder of ours, and
places a font where ultralytics looks for Arial (it downloads one otherwise, even offline).
Idempotent; call it first thing in every tool, test session and the notebook.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["setup_offline", "default_home"]

_DONE: dict[str, str] = {}


def default_home() -> Path:
    """Folder for redirected config/cache dirs: $KAGGLE_KIT_HOME, else ~/.cache/kaggle_kit."""
    return Path(os.environ.get("KAGGLE_KIT_HOME", Path.home() / ".cache" / "kaggle_kit"))


def _find_ttf() -> Path | None:
    """A TrueType font that ships with an installed package (matplotlib's DejaVuSans) or the system."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("matplotlib")
        if spec and spec.origin:
            p = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
            if p.is_file():
                return p
    except Exception:  # noqa: BLE001 - any failure just means "no font from matplotlib"
        pass
    for p in (Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),):
        if p.is_file():
            return p
    return None


def setup_offline(home: str | Path | None = None) -> Path:
    """Set offline env vars and redirect config dirs into ``home``; returns ``home``.

    Environment variables already set by the user are kept (``setdefault``), except the offline switches,
    which are forced on.
    """
    home = Path(home) if home is not None else default_home()
    if _DONE.get("home") == str(home):
        return home
    home.mkdir(parents=True, exist_ok=True)
    forced = {
        "YOLO_OFFLINE": "1",  # ultralytics: no DNS / hub / update checks
        "NO_ALBUMENTATIONS_UPDATE": "1",  # albumentations: no version check at import
        "HF_HUB_OFFLINE": "1",  # timm / smp hub weights
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "MPLBACKEND": os.environ.get("MPLBACKEND", "Agg"),
    }
    os.environ.update(forced)
    dirs = {
        "YOLO_CONFIG_DIR": home / "yolo",
        "MPLCONFIGDIR": home / "matplotlib",
        "TORCH_HOME": home / "torch",
        "HF_HOME": home / "hf",
        "NUMBA_CACHE_DIR": home / "numba",
    }
    for key, path in dirs.items():
        os.environ.setdefault(key, str(path))
        Path(os.environ[key]).mkdir(parents=True, exist_ok=True)
    # ultralytics checks for Arial.ttf / Arial.Unicode.ttf under $YOLO_CONFIG_DIR/Ultralytics/ and
    # downloads them when missing; any TTF under that name satisfies the check.
    font = _find_ttf()
    ul = Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics"
    ul.mkdir(parents=True, exist_ok=True)
    if font is not None:
        for name in ("Arial.ttf", "Arial.Unicode.ttf"):
            dst = ul / name
            if not dst.exists():
                try:
                    dst.symlink_to(font)
                except OSError:
                    dst.write_bytes(font.read_bytes())
    _DONE["home"] = str(home)
    return home
