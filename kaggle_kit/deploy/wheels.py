"""Wheels for a target Python image: tags, the dependency closure, download, and a check of a wheel folder.

A :class:`Target` is an interpreter + platform the bundle must install on: ``kaggle`` (the Kaggle notebook
image: CPython 3.12 on glibc 2.35, x86_64) or ``local`` (this interpreter). Everything here works on wheel
files and ``Requires-Dist`` metadata with environment markers evaluated for the TARGET, never for the
Python that runs the bundler, so a 3.11 machine builds a correct 3.12 bundle.

The closure is pinned to the versions installed here (the set this project tests, ``constraints.txt``);
a name the target needs that is not installed here (a marker true only on the target) is fetched by its
requirement's specifier. There is no fallback: a distribution with no wheel for the target is an error that
lists every such distribution. torch, torchvision and their CUDA wheels are the image's and never bundled.
"""
from __future__ import annotations

import email.parser
import importlib.metadata as md
import os
import platform as _platform
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags, sys_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

__all__ = ["EXCLUDE", "TARGETS", "Target", "WheelError", "check_wheels", "collect_wheels", "manylinux_platforms",
           "read_wheel_metadata", "target"]

# Provided by the target image (torch and what comes with it) or by every Python: never bundled.
EXCLUDE = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-.*|cuda-.*|setuptools|pip|wheel)$")


class WheelError(RuntimeError):
    """A wheel folder cannot serve the target (missing distributions, wrong tags, conflicts); lists them all."""


def manylinux_platforms(glibc_minor: int, arch: str = "x86_64") -> tuple[str, ...]:
    """PEP 600 platform tags a glibc 2.<glibc_minor> machine runs, newest first: ``manylinux_2_<m>_<arch>``
    for m = glibc_minor ... 5, with the legacy aliases manylinux2014 (2.17), manylinux2010 (2.12) and
    manylinux1 (2.5) placed after their versions."""
    alias = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    out = []
    for m in range(glibc_minor, 4, -1):
        out.append(f"manylinux_2_{m}_{arch}")
        if m in alias:
            out.append(f"{alias[m]}_{arch}")
    return tuple(out)


@dataclass(frozen=True)
class Target:
    """An interpreter + platform wheels must install on.

    Attributes:
        name: ``kaggle`` | ``local`` (what the bundle records).
        python: (major, minor), e.g. (3, 12).
        platforms: platform tags, most specific first (no ``any``: pure wheels are always accepted).
        machine: ``platform_machine`` for markers.
        local: True for this interpreter: tags are ``packaging.tags.sys_tags()`` and markers this environment.
    """

    name: str
    python: tuple[int, int]
    platforms: tuple[str, ...]
    machine: str = "x86_64"
    local: bool = False

    @property
    def python_version(self) -> str:
        return f"{self.python[0]}.{self.python[1]}"

    @property
    def abi(self) -> str:
        return f"cp{self.python[0]}{self.python[1]}"

    def tags(self) -> list[Tag]:
        """Every wheel tag the target accepts, most preferred first."""
        if self.local:
            return list(sys_tags())
        cp = list(cpython_tags(self.python, abis=[self.abi], platforms=list(self.platforms)))
        return cp + list(compatible_tags(self.python, interpreter=self.abi, platforms=list(self.platforms)))

    def marker_env(self) -> dict[str, str]:
        """The PEP 508 marker environment of the target (``extra`` is added per requirement)."""
        if self.local:
            return dict(default_environment())
        v = self.python_version
        return {"implementation_name": "cpython", "implementation_version": f"{v}.0", "os_name": "posix",
                "platform_machine": self.machine, "platform_python_implementation": "CPython",
                "platform_release": "", "platform_system": "Linux", "platform_version": "",
                "python_full_version": f"{v}.0", "python_version": v, "sys_platform": "linux"}

    def pip_args(self) -> list[str]:
        """``pip download`` options that select this target's wheels only (never an sdist)."""
        args = ["--only-binary=:all:"]
        if self.local:
            return args
        args += ["--python-version", self.python_version, "--implementation", "cp", "--abi", self.abi]
        for p in self.platforms:
            args += ["--platform", p]
        return args


def _local_target() -> Target:
    return Target(name="local", python=sys.version_info[:2], platforms=(), machine=_platform.machine(), local=True)


#: The Kaggle notebook image: CPython 3.12 (Kaggle/docker-python #1496), Ubuntu 22.04 = glibc 2.35, x86_64.
TARGETS: dict[str, Callable[[], Target]] = {
    "kaggle": lambda: Target(name="kaggle", python=(3, 12), platforms=manylinux_platforms(35)),
    "local": _local_target,
}


def target(name: str) -> Target:
    """The named target (KeyError listing the options)."""
    if name not in TARGETS:
        raise KeyError(f"unknown target {name!r}; options: {sorted(TARGETS)}")
    return TARGETS[name]()


# ---------------------------------------------------------------------------------------------------------------
# metadata

@dataclass(frozen=True)
class Dist:
    """A distribution's name (canonical), version and ``Requires-Dist`` lines."""

    name: str
    version: str
    requires: tuple[str, ...]


def read_wheel_metadata(path: str | Path) -> Dist:
    """Name, version and Requires-Dist of a wheel, from its ``*.dist-info/METADATA`` (ValueError if absent)."""
    path = Path(path)
    name, version, _, _ = parse_wheel_filename(path.name)
    with zipfile.ZipFile(path) as z:
        metas = [n for n in z.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        if len(metas) != 1:
            raise ValueError(f"{path.name}: expected one *.dist-info/METADATA, found {metas}")
        msg = email.parser.Parser().parsestr(z.read(metas[0]).decode("utf-8"))
    return Dist(str(name), str(version), tuple(msg.get_all("Requires-Dist") or ()))


def _installed(name: str) -> Dist | None:
    try:
        d = md.distribution(name)
    except md.PackageNotFoundError:
        return None
    return Dist(str(canonicalize_name(d.metadata["Name"])), d.version, tuple(d.requires or ()))


def _wheels_by_name(folder: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for p in sorted(Path(folder).glob("*.whl")):
        out.setdefault(str(parse_wheel_filename(p.name)[0]), []).append(p)
    return out


@dataclass
class Need:
    """One distribution of a closure: who asked for it, with which specifiers and extras."""

    name: str
    specifier: SpecifierSet
    extras: set[str]
    parents: list[str]


def closure(requirements: Iterable[str], tgt: Target, meta: Callable[[str], Dist | None]) -> dict[str, Need]:
    """Every distribution ``requirements`` need on ``tgt`` (markers evaluated for the target, extras followed),
    with ``meta(name)`` giving each one's metadata (None: unknown, its own requirements are not followed).
    Excluded names (:data:`EXCLUDE`) are cut with their subtree."""
    env = tgt.marker_env()
    needs: dict[str, Need] = {}
    todo: list[tuple[str, str]] = [(r, "<root>") for r in requirements]
    expanded: set[tuple[str, str]] = set()  # (name, extra) already followed
    while todo:
        line, parent = todo.pop()
        req = Requirement(line)
        name = str(canonicalize_name(req.name))
        if EXCLUDE.match(name):
            continue
        n = needs.setdefault(name, Need(name, SpecifierSet(), set(), []))
        n.specifier &= req.specifier
        n.extras |= {str(canonicalize_name(e)) for e in req.extras}
        n.parents.append(parent)
        dist = meta(name)
        if dist is None:
            continue
        for extra in ["", *sorted(n.extras)]:
            if (name, extra) in expanded:
                continue
            expanded.add((name, extra))
            for sub in dist.requires:
                m = Requirement(sub).marker
                if m is not None and not m.evaluate(dict(env, extra=extra)):
                    continue
                if extra and (m is None or m.evaluate(dict(env, extra=""))):
                    continue  # not specific to this extra: followed already with extra ""
                todo.append((sub, f"{name}[{extra}]" if extra else name))
    return needs


# ---------------------------------------------------------------------------------------------------------------
# checking a folder

def check_wheels(folder: str | Path, requirements: Iterable[str], tgt: Target) -> list[str]:
    """Problems that stop ``requirements`` installing on ``tgt`` from the wheels in ``folder`` alone.

    Each problem is one line: a wheel with no tag the target accepts, two wheels of one distribution, a
    required distribution with no wheel, or a wheel whose version is outside a requirement's specifier
    (naming who required it). Markers are evaluated for the target; excluded names are not required.
    An empty list means the folder is complete."""
    accepted = set(tgt.tags())
    problems = []
    by_name = _wheels_by_name(Path(folder))
    for name, paths in by_name.items():
        if len(paths) > 1:
            problems.append(f"{name}: several wheels {[p.name for p in paths]}")
        for p in paths:
            if not (parse_wheel_filename(p.name)[3] & accepted):
                problems.append(f"{p.name}: no tag for {tgt.name} (CPython {tgt.python_version}, "
                                f"{tgt.platforms[:1] or 'this interpreter'})")
    metas = {n: read_wheel_metadata(ps[0]) for n, ps in by_name.items()}
    for name, need in sorted(closure(requirements, tgt, metas.get).items()):
        if name not in metas:
            problems.append(f"{name}{need.specifier}: no wheel (required by {', '.join(sorted(set(need.parents)))})")
        elif not need.specifier.contains(Version(metas[name].version), prereleases=True):
            problems.append(f"{name} {metas[name].version}: outside {need.specifier} required by "
                            f"{', '.join(sorted(set(need.parents)))}")
    return problems


# ---------------------------------------------------------------------------------------------------------------
# download

def _pip_download(specs: list[str], dest: Path, tgt: Target) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), *tgt.pip_args(), *specs]
    p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"))
    return p.returncode, p.stderr


def _last_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip().startswith("ERROR")]
    return (lines[0] if lines else stderr.strip()[-300:])[:300]


def collect_wheels(requirements: list[str], dest: str | Path, tgt: Target, *,
                   download: Callable[[list[str], Path, Target], tuple[int, str]] = _pip_download,
                   max_rounds: int = 6) -> dict[str, str]:
    """Fill ``dest`` with a wheel for ``tgt`` of every distribution ``requirements`` need; returns
    {name: version} of what it holds.

    Wheels already in ``dest`` (e.g. kaggle_kit's own, built first) are read from there; the others are
    pinned to the version installed here and fetched with ``pip download --no-deps`` and the target's tags
    (``download`` is injectable for tests). Each round reads the fetched wheels' own metadata, so requirements
    that only the target's markers switch on are found and fetched in the next round.

    Raises:
        WheelError: listing every distribution with no wheel for the target, or every problem
            :func:`check_wheels` still finds at the end.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    missing: dict[str, str] = {}  # name -> "spec (pip's error)"; the search goes on past them, to list all
    for _ in range(max_rounds):
        have = _wheels_by_name(dest)
        needs = closure(requirements, tgt, lambda n, h=have: read_wheel_metadata(h[n][0]) if n in h else _installed(n))
        todo = sorted(n for n in needs if n not in have and n not in missing)
        if not todo:
            break
        specs = {}
        for n in todo:
            inst = _installed(n)
            spec = needs[n].specifier
            if inst is not None and spec.contains(Version(inst.version), prereleases=True):
                specs[n] = f"{n}=={inst.version}"  # the tested version
            else:
                specs[n] = f"{n}{spec}"
        rc, _ = download(list(specs.values()), dest, tgt)
        if rc != 0:  # one at a time: every failing one, not just pip's first
            for n, s in specs.items():
                rc1, err1 = download([s], dest, tgt)
                if rc1 != 0:
                    missing[n] = f"{s} ({_last_error(err1)})"
    if missing:
        raise WheelError(f"no wheel for {tgt.name} (CPython {tgt.python_version}, "
                         f"{', '.join(tgt.platforms[:1]) or 'this interpreter'} or older) for {len(missing)} "
                         "distribution(s):\n  " + "\n  ".join(missing[n] for n in sorted(missing)))
    problems = check_wheels(dest, requirements, tgt)
    if problems:
        raise WheelError(f"the wheels in {dest} do not install on {tgt.name}:\n  " + "\n  ".join(problems))
    return {n: read_wheel_metadata(ps[0]).version for n, ps in sorted(_wheels_by_name(dest).items())}
