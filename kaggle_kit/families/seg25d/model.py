"""2.5D segmentation models through segmentation_models_pytorch (smp), and loading local weights.

A 2.5D input stacks ``k`` neighbouring slices as channels: ``x`` is float (B, k, H, W), already normalised.
The model returns raw logits (B, classes, H, W): the classes are multi-label (sigmoid per class, organs
may overlap), so there is no activation inside. ``H`` and ``W`` must be multiples of 32: smp's UNet++ and
UPerNet raise otherwise (smp 0.6's Unet interpolates its skip connections and accepts any size, but its
feature maps then no longer line up with the input grid). The 2.5D dataset pads every slice to a multiple
of 32 and prediction crops the padding away, so the models never handle odd sizes themselves.

Building never downloads anything: ``encoder_weights`` must stay ``None``. Pretrained encoders come from a
local file the user downloaded, given as ``weights_path`` (see :func:`load_weights`).

Architectures (``arch``): ``"unet"``, ``"unetplusplus"``, ``"upernet"``. Encoders (``encoder_name``): any smp
encoder (``resnet18``, ``efficientnet-b0``, ``mit_b0``...; ``smp.encoders.get_encoder_names()``) or any timm
model as ``"tu-<timm name>"``. Checked here with smp 0.6.0 / timm 1.0.31 on 64x64 inputs with 5 channels and
the aux head, forward and backward, for all three archs unless noted (the tests cover the first four encoders
on every arch, plus ``efficientnet-b0``, ``mit_b0`` and Swin):

- CNNs: ``resnet18``, ``efficientnet-b0``, ``tu-efficientnet_b0``, ``tu-convnext_atto``, ``tu-convnextv2_atto``,
  ``tu-test_mambaout``, ``tu-mambaout_femto``.
- transformers / hybrids: ``tu-pvt_v2_b0``, ``tu-caformer_s18``, ``tu-efficientvit_b0``, ``tu-fastvit_t8``;
  smp's own ``mit_b0`` (SegFormer's MiT) works with ``unet`` and ``upernet``; smp refuses it for ``unetplusplus``.
- need a timm argument through ``**kw``: Swin (``tu-swin_tiny_patch4_window7_224``,
  ``tu-swinv2_tiny_window8_256``) asserts that the input equals its ``img_size`` (224/256): pass
  ``strict_img_size=False`` (then any multiple of 32 works, windows are padded; checked at 64 and 96) or
  ``img_size=H``; MaxViT (``tu-maxvit_nano_rw_256``, ``tu-test_maxvit``) and CoAtNet (``tu-test_coatnet``)
  work only with ``img_size=H`` (a fixed input size: their windows must tile the feature maps).
- do not work: plain ViTs (``tu-vit_*``, ``tu-test_vit``): a single stride, smp raises "Unsupported model
  downsampling pattern" (smp's DPT arch is meant for them and is not offered here).
"""
from __future__ import annotations

import difflib
import inspect
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch import nn

__all__ = [
    "ARCHS",
    "LoadReport",
    "build_seg_model",
    "load_into",
    "load_weights",
    "read_state_dict",
    "timm_to_features",
]

log = logging.getLogger(__name__)

ARCHS: dict[str, type] = {"unet": smp.Unet, "unetplusplus": smp.UnetPlusPlus, "upernet": smp.UPerNet}

_UNET_DECODER = (256, 128, 64, 32, 16)
_MODEL_PREFIXES = ("encoder.", "decoder.", "segmentation_head.", "classification_head.")


def build_seg_model(arch: str = "unet", encoder_name: str = "resnet18", in_channels: int = 3, classes: int = 3,
                    encoder_weights: None = None, encoder_depth: int = 5, decoder_channels=None,
                    aux_head: bool = False, aux_dropout: float = 0.2, weights_path: str | Path | None = None,
                    weights_target: str = "auto", **kw) -> nn.Module:
    """Build a randomly initialised smp segmentation model; optionally load a local weights file.

    Args:
        arch: ``"unet"``, ``"unetplusplus"`` or ``"upernet"`` (unknown -> KeyError listing them).
        encoder_name: smp encoder name or ``"tu-<timm model>"`` (unknown -> KeyError with close matches).
            See the module docstring for which encoders work with which archs.
        in_channels: ``k``, the number of stacked slices.
        classes: output channels (3: large bowel, small bowel, stomach).
        encoder_weights: must be ``None``; building never downloads (use ``weights_path``).
        encoder_depth: number of encoder stages used (5: down to stride 32).
        decoder_channels: Unet/Unet++: one width per stage (default ``(256, 128, 64, 32, 16)[:encoder_depth]``);
            UPerNet: one int (default 256).
        aux_head: add a classification head on the deepest features (smp ``aux_params``); forward then returns
            ``(seg_logits (B, classes, H, W), cls_logits (B, classes))``, the logits of per-class presence.
        aux_dropout: dropout before the classification head's linear layer.
        weights_path: a local ``.pth``/``.pt``/``.bin``/``.safetensors`` state dict, loaded after building with
            ``strict=False`` by :func:`load_weights`; missing, unexpected and shape-mismatched keys are logged.
        weights_target: ``"auto"``, ``"model"`` or ``"encoder"`` (see :func:`load_weights`).
        **kw: other arguments of the smp arch (``decoder_attention_type="scse"``, ``decoder_interpolation``,
            ``upsampling``...); the rest go to the encoder, i.e. ``timm.create_model`` for ``tu-`` encoders
            (``strict_img_size=False``, ``img_size``, ``drop_path_rate``...).

    Returns:
        the smp model; ``forward(x: float (B, in_channels, H, W))`` returns logits (B, classes, H, W), or the
        tuple above when ``aux_head``. H and W must be multiples of 32 (the dataset pads).
    """
    if arch not in ARCHS:
        raise KeyError(f"unknown arch {arch!r}; options: {sorted(ARCHS)}")
    if encoder_weights is not None:
        raise ValueError(f"encoder_weights={encoder_weights!r}: building never downloads weights; keep it None and "
                         "pass a local file as weights_path (e.g. a timm model.safetensors or a torchvision .pth)")
    _check_encoder(encoder_name)
    cls = ARCHS[arch]
    if decoder_channels is None:
        decoder_channels = 256 if arch == "upernet" else _UNET_DECODER[:encoder_depth]
    aux = {"classes": classes, "dropout": aux_dropout, "pooling": "avg", "activation": None} if aux_head else None
    model = cls(encoder_name=encoder_name, encoder_depth=encoder_depth, encoder_weights=None,
                decoder_channels=decoder_channels, in_channels=in_channels, classes=classes, activation=None,
                aux_params=aux, **kw)
    if weights_path is not None:
        params = inspect.signature(cls).parameters
        load_weights(model, weights_path, target=weights_target,
                     **{k: v for k, v in kw.items() if k not in params})
    return model


def _check_encoder(name: str) -> None:
    """KeyError with close matches for an encoder that neither smp nor timm knows (before smp fails obscurely)."""
    if name.startswith("tu-"):
        import timm

        if not timm.is_model(name[3:]):
            close = difflib.get_close_matches(name[3:].split(".")[0], timm.list_models(), n=5)
            raise KeyError(f"unknown timm encoder {name!r}; close timm names: {['tu-' + c for c in close]}")
        return
    names = smp.encoders.get_encoder_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5)
        raise KeyError(f"unknown encoder {name!r}; close smp encoders: {close}; any timm model works as 'tu-<name>' "
                       f"(all smp encoders: smp.encoders.get_encoder_names())")


# ---------------------------------------------------------------------------------------------------------------
# Local weights. Shared with the mmseg family (kaggle_kit.families.seg25d.mmseg_upernet).

@dataclass
class LoadReport:
    """What :func:`load_into` did with a state dict: key lists relative to the target module."""

    target: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # key, file shape, model shape
    adapted: list[str] = field(default_factory=list)  # input convs rebuilt from 3 channels to in_channels
    notes: list[str] = field(default_factory=list)

    def log(self, path) -> None:
        """Log at WARNING when part of the target stayed unloaded (missing or mismatched keys), else INFO."""
        level = logging.WARNING if (self.missing or self.mismatched or not self.loaded) else logging.INFO
        log.log(level, "weights %s -> %s", path, self)

    def __str__(self) -> str:
        def head(keys):
            return f"{len(keys)}" + (f" {list(keys)[:8]}{'...' if len(keys) > 8 else ''}" if keys else "")

        return (f"{self.target}: loaded {self.loaded} tensors; missing {head(self.missing)}; unexpected "
                f"{head(self.unexpected)}; shape-mismatched {head(self.mismatched)}; input convs adapted "
                f"{self.adapted}" + (f"; {'; '.join(self.notes)}" if self.notes else ""))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a local state dict without running code: safetensors, or ``torch.load(weights_only=True)``.

    Unwraps one level of ``{"state_dict"|"model"|"model_state_dict"|"module": {...}}`` (our exported
    ``best.pth``/``last.pth``, timm training checkpoints) and strips a ``module.`` prefix (DDP). Raises
    FileNotFoundError for a missing file and ValueError for anything that is not a plain state dict (including
    mmengine's training checkpoints, which need ``weights_only=False``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path), device="cpu")
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - pickles that need code (e.g. mmengine training checkpoints)
            raise ValueError(f"{path} is not loadable with torch.load(weights_only=True) ({type(e).__name__}); "
                             "pass a plain state dict, a safetensors file or an exported best.pth/last.pth") from None
    if isinstance(sd, dict):
        for key in ("state_dict", "model", "model_state_dict", "module"):
            if isinstance(sd.get(key), dict):
                sd = sd[key]
                break
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path} does not hold a state dict (name -> tensor)")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


def _adapt_input_convs(sd: dict, own: dict) -> list[str]:
    """Rebuild RGB (3-channel) conv weights for a model with another number of input channels, in place.

    Uses timm's rule (repeat the RGB filters over the channels and rescale by 3/in_channels; sum for 1 channel),
    which is also what smp does for pretrained encoders with ``in_channels != 3``.
    """
    from timm.models import adapt_input_conv

    adapted = []
    for k, w in sd.items():
        o = own.get(k)
        if (o is not None and w.ndim == 4 and o.ndim == 4 and w.shape[1] == 3 and o.shape[1] != 3
                and w.shape[0] == o.shape[0] and w.shape[2:] == o.shape[2:]):
            sd[k] = adapt_input_conv(o.shape[1], w)
            adapted.append(k)
    return adapted


def load_into(module: nn.Module, sd: dict[str, torch.Tensor], target: str = "module") -> LoadReport:
    """Load ``sd`` into ``module`` with ``strict=False``: adapt RGB input convs, skip shape mismatches, report.

    ``num_batches_tracked`` counters absent from the file are not reported as missing.
    """
    sd = dict(sd)
    own = module.state_dict()
    report = LoadReport(target=target, adapted=_adapt_input_convs(sd, own))
    for k in [k for k in sd if k in own and sd[k].shape != own[k].shape]:
        report.mismatched.append((k, tuple(sd[k].shape), tuple(own[k].shape)))
        del sd[k]
    # nn.Module's own method: several smp encoders override load_state_dict without `strict` or a return value.
    result = nn.Module.load_state_dict(module, sd, strict=False)
    skipped = {k for k, _, _ in report.mismatched}
    report.missing = [k for k in result.missing_keys if k not in skipped and not k.endswith("num_batches_tracked")]
    report.unexpected = list(result.unexpected_keys)
    report.loaded = len(sd) - len(report.unexpected)
    return report


def timm_to_features(model_name: str, sd: dict[str, torch.Tensor], features: nn.Module, in_chans: int,
                     **timm_kwargs) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Map a timm classification checkpoint onto a timm ``features_only`` module.

    timm writes checkpoints for the full model (``stem.0.weight``, ``stages.1...``, ``head.fc...``), while
    ``features_only`` wrappers rename flattened modules (``stem_0.weight``, ``stages_1...``) and drop the head.
    The model's own ``checkpoint_filter_fn`` is applied first (it converts original FB/MS checkpoints and resizes
    position tables), against a full model built on the meta device with the same arguments. Keys then match on
    names with ``_`` and ``.`` treated alike.

    Returns:
        (state dict for ``features``, file keys with no place in ``features`` such as the head, notes).
    """
    import timm

    notes: list[str] = []
    full = None
    try:
        with torch.device("meta"):
            full = timm.create_model(model_name, pretrained=False, in_chans=in_chans, **timm_kwargs)
    except Exception as e:  # noqa: BLE001 - a model that cannot build on meta just skips the filter
        notes.append(f"no checkpoint filter (full model did not build on meta: {type(e).__name__})")
    if full is not None:
        filter_fn = getattr(sys.modules[type(full).__module__], "checkpoint_filter_fn", None)
        if filter_fn is not None:
            try:
                try:
                    sd = filter_fn(sd, full)
                except TypeError:
                    sd = filter_fn(sd)
            except Exception as e:  # noqa: BLE001 - keep the raw dict; the key report shows what did not fit
                notes.append(f"{model_name} checkpoint_filter_fn failed ({type(e).__name__}: {e}); keys used as is")
    keys = list(features.state_dict())
    canon = {k.replace("_", "."): k for k in keys}
    exact = len(canon) != len(keys)  # two names collapse: match exact names only
    if exact:
        canon = {k: k for k in keys}
        notes.append("ambiguous '_'/'.' names: matched keys exactly")
    out, unused = {}, []
    for k, v in sd.items():
        fk = canon.get(k if exact else k.replace("_", "."))
        if fk is None:
            unused.append(k)
        else:
            out[fk] = v
    return out, unused, notes


def load_weights(model: nn.Module, path: str | Path, target: str = "auto", **timm_kwargs) -> LoadReport:
    """Load a local weights file into an smp model built by :func:`build_seg_model`; never downloads.

    Args:
        model: the smp model.
        path: ``.safetensors`` or a torch file (read with ``weights_only=True``).
        target: ``"model"``: the whole model (keys ``encoder.*``, ``decoder.*``, ``segmentation_head.*``: our own
            checkpoints); ``"encoder"``: encoder weights only, in the encoder's native format: a timm checkpoint
            (full classification model, e.g. ``model.safetensors`` from the timm hub) for ``tu-`` encoders, the
            torchvision / smp format for smp's own encoders (``resnet18``: torchvision's ``resnet18-*.pth``);
            ``"auto"``: ``"model"`` when any key starts with ``encoder.``/``decoder.``/``segmentation_head.``.
        **timm_kwargs: the ``timm.create_model`` arguments the encoder was built with (``img_size``...), used
            only to run the timm model's checkpoint filter (``tu-`` encoders).

    RGB first-conv weights are adapted to ``in_channels`` (repeated and rescaled). Loading is ``strict=False``:
    the report lists missing, unexpected (classifier heads, for encoder files) and shape-mismatched keys
    (skipped), and is logged (warning when anything of the target stayed unloaded).
    """
    sd = read_state_dict(path)
    if target == "auto":
        target = "model" if any(k.startswith(_MODEL_PREFIXES) for k in sd) else "encoder"
    if target == "model":
        report = load_into(model, sd, target="model")
    elif target == "encoder":
        enc = model.encoder
        if isinstance(enc, smp.encoders.TimmUniversalEncoder):
            sd, unused, notes = timm_to_features(enc.name, sd, enc.model, enc._in_channels, **timm_kwargs)
            report = load_into(enc.model, sd, target="encoder")
            report.unexpected += unused
            report.notes += notes
        else:
            report = load_into(enc, sd, target="encoder")
    else:
        raise ValueError(f"target must be 'auto', 'model' or 'encoder', got {target!r}")
    report.log(path)
    return report
