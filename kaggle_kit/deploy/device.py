"""Which device the notebook runs on: CUDA only when the installed torch carries kernels for the GPU's compute
capability (a P100, sm_60, with a recent torch does not) and a tiny kernel runs; otherwise the CPU, with a
warning saying why."""
from __future__ import annotations

import platform
import re
import sys

from kaggle_kit.deploy.messages import say

__all__ = ["arch_supported", "pick_device"]

_ARCH = re.compile(r"^(sm|compute)_(\d+)([a-z]?)$")


def _arch_version(num: str) -> tuple[int, int]:
    """'60' -> (6, 0), '120' -> (12, 0): the last digit is the minor version."""
    return int(num[:-1]), int(num[-1])


def arch_supported(capability: tuple[int, int], arch_list) -> tuple[bool, str]:
    """Can a torch built for ``arch_list`` (``torch.cuda.get_arch_list()``, e.g. ['sm_70', 'sm_80',
    'compute_80']) run kernels on a device of ``capability`` (major, minor)? Returns (ok, why).

    A cubin ``sm_XY`` runs on devices of the same major version X and minor >= Y (``sm_XYa`` only on
    exactly X.Y); PTX ``compute_XY`` is JIT-compiled for any device of capability >= X.Y."""
    cap = (int(capability[0]), int(capability[1]))
    for a in arch_list or []:
        m = _ARCH.match(str(a))
        if not m:
            continue
        kind, ver, suffix = m.group(1), _arch_version(m.group(2)), m.group(3)
        if kind == "sm" and (ver == cap if suffix == "a" else (ver[0] == cap[0] and ver[1] <= cap[1])):
            return True, f"binary kernels {a}"
        if kind == "compute" and not suffix and ver <= cap:
            return True, f"PTX {a} (JIT-compiled for sm_{cap[0]}{cap[1]})"
    return False, f"no sm_{cap[0]}{cap[1]} kernels and no PTX at or below it in {list(arch_list or [])}"


def pick_device(torch_module=None, smoke: bool = True) -> tuple[str, dict]:
    """Print the environment and choose the device: ("cuda" | "cpu", info dict).

    CUDA is used only when it is available, torch was built for the device's compute capability
    (:func:`arch_supported`) and, with ``smoke``, a tiny kernel runs on it; otherwise the CPU, with a
    WARNING line that says why. ``torch_module``: a stand-in for tests (default: ``import torch``, lazily:
    torch is heavy)."""
    if torch_module is None:
        import torch as torch_module
    t = torch_module
    info = {"python": platform.python_version(), "torch": getattr(t, "__version__", "?"),
            "cuda_build": getattr(getattr(t, "version", None), "cuda", None), "device": "cpu",
            "device_name": None, "capability": None, "arch_list": None, "torch_supports_device": None}
    say(f"Python {info['python']} ({sys.platform}), torch {info['torch']} (CUDA build {info['cuda_build']})")
    if not t.cuda.is_available():
        say("no CUDA device: running on the CPU")
        return "cpu", info
    cap = tuple(int(v) for v in t.cuda.get_device_capability(0))
    arch = list(t.cuda.get_arch_list())
    ok, why = arch_supported(cap, arch)
    info.update(device_name=t.cuda.get_device_name(0), capability=f"{cap[0]}.{cap[1]}", arch_list=arch,
                torch_supports_device=ok)
    say(f"GPU {info['device_name']}: compute capability {cap[0]}.{cap[1]}; torch built for {arch}: "
         f"{'yes, ' + why if ok else 'NO'}")
    if not ok:
        say(f"torch {info['torch']} cannot run on {info['device_name']} (sm_{cap[0]}{cap[1]}): {why}. "
             f"NOT using the GPU: running on the CPU instead (much slower; attach a newer GPU, e.g. T4 x2)",
             warn=True)
        return "cpu", info
    if smoke:
        try:
            x = t.ones(8, device="cuda")
            float((x * 2).sum().item())
        except Exception as e:  # noqa: BLE001 - any kernel failure means the GPU is unusable
            info["torch_supports_device"] = False
            say(f"a test kernel failed on {info['device_name']} ({type(e).__name__}: {e}); NOT using the GPU: "
                 f"running on the CPU instead", warn=True)
            return "cpu", info
    info["device"] = "cuda"
    return "cuda", info
