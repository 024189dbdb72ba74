"""CANN versions and Ascend SoCs, spelled the way the `kernels` loader reads them.

The loader (kernels 0.17.2, `backends._select_backend`) takes torch_npu's `get_cann_version()` string
and builds `Version(f"{s[0]}.{s[2]}")` from its characters 0 and 2: "8.2.RC1" -> 8.2 -> variant backend
`cann82`, and requires an exact match. torch_npu's `get_cann_version()` walks $ASCEND_HOME_PATH for
`ascend_*_install.info` files and returns the value after `=` on the first line containing "version"
(the last such file found wins), else "not known".

We parse the same text the same way, and refuse every version the two-character scheme would misread
(a two-digit major or minor: "10.0.0" reads as "1..", "8.10.0" would silently become cann81).

Nothing here needs a CANN toolkit, torch_npu or an NPU.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .. import settings
from ..variants import Variant, backend_string

# --------------------------------------------------------------------------------------------------
# SoCs -> arch groups
# --------------------------------------------------------------------------------------------------

# soc-version -> (arch group, ASC `--npu-arch`). Kernels built once per arch group run on every SoC of
# the group. Names as torch_npu's c10_npu::SocVersion and CANN's SOC_VERSION spell them.
#   c220 (dav-2201): Atlas A2 training/inference (910B) and A3 (910_93xx); same AI Core generation.
#   m200 (dav-2002): Atlas 300I/V Pro, 300I Duo (310P).
#   m300 (dav-3002): Atlas 200I/500 A2 (310B).
# Ascend910A/ProA/ProB (c100) are not listed: ASC and recent CANN releases no longer target them.
_C220 = ("c220", "dav-2201")
_M200 = ("m200", "dav-2002")
_M300 = ("m300", "dav-3002")
SOC_ARCHS: dict[str, tuple[str, str]] = {
    **{s: _C220 for s in ("Ascend910B1", "Ascend910B2", "Ascend910B2C", "Ascend910B3", "Ascend910B4")},
    **{s: _C220 for s in ("Ascend910_9391", "Ascend910_9392", "Ascend910_9381", "Ascend910_9382",
                          "Ascend910_9372", "Ascend910_9362")},
    **{s: _M200 for s in ("Ascend310P1", "Ascend310P2", "Ascend310P3", "Ascend310P4", "Ascend310P5",
                          "Ascend310P7")},
    **{s: _M300 for s in ("Ascend310B1", "Ascend310B2", "Ascend310B3", "Ascend310B4")},
}
KNOWN_SOCS = tuple(SOC_ARCHS)
# What a cann kernel's `src` may list: Ascend C sources (.cpp for CANN 8.x, .asc for the ASC language), headers.
CANN_SRC_SUFFIXES = {".cpp", ".asc", ".h", ".hpp"}
# What a cann kernel without `soc-versions` is built for: the Atlas A2/A3 generation torch_npu targets.
DEFAULT_SOC_VERSIONS = ("Ascend910B1",)


def soc_arch(soc: str) -> str:
    """"Ascend910B3" -> "c220". KeyError-free: ValueError naming the SoC and the known ones."""
    try:
        return SOC_ARCHS[soc][0]
    except KeyError:
        raise ValueError(f"unknown Ascend SoC {soc!r}; known: {', '.join(KNOWN_SOCS)}") from None


def npu_arch(soc_or_arch: str) -> str:
    """The ASC language `--npu-arch` value for a SoC or an arch group: "Ascend910B1"/"c220" -> "dav-2201"."""
    if soc_or_arch in SOC_ARCHS:
        return SOC_ARCHS[soc_or_arch][1]
    for arch, dav in set(SOC_ARCHS.values()):
        if arch == soc_or_arch:
            return dav
    raise ValueError(f"unknown Ascend SoC or arch group {soc_or_arch!r}")


def group_socs(socs) -> dict[str, tuple[str, ...]]:
    """Group soc-versions by arch (one compile per group), in order of first appearance, duplicates
    dropped: ["Ascend910B1", "Ascend310P3", "Ascend910_9391"] ->
    {"c220": ("Ascend910B1", "Ascend910_9391"), "m200": ("Ascend310P3",)}.
    The first SoC of a group is the one handed to CANN 8.x's SOC_VERSION."""
    groups: dict[str, list[str]] = {}
    for soc in socs:
        members = groups.setdefault(soc_arch(soc), [])
        if soc not in members:
            members.append(soc)
    return {arch: tuple(members) for arch, members in groups.items()}


# --------------------------------------------------------------------------------------------------
# CANN versions
# --------------------------------------------------------------------------------------------------

class CannVersionError(ValueError):
    """A CANN version the loader's variant scheme cannot represent (or no version at all)."""


def read_install_info(text: str) -> str:
    """The version torch_npu's get_cann_version() reads from one `ascend_*_install.info` file: the value
    after the last `=` on the first line that contains "version"; "not known" when no line does."""
    for line in text.splitlines():
        if "version" in line:
            return line.strip().split("=")[-1]
    return "not known"


def find_install_info(ascend_home: str | os.PathLike | None = None) -> Path | None:
    """The install.info file get_cann_version() would read under $ASCEND_HOME_PATH (the last one
    os.walk meets, first in each directory's listing)."""
    home = ascend_home if ascend_home is not None else (settings.current().ascend_home or "")
    if not home:
        return None
    found = None
    for dirpath, _, filenames in os.walk(os.path.realpath(home)):
        infos = [f for f in filenames if re.match(r"ascend_.*_install\.info", f)]
        if infos:
            found = Path(dirpath) / infos[0]
    return found


def cann_mm(version: str) -> tuple[int, int]:
    """"8.2.RC1" -> (8, 2), exactly as the loader reads it (characters 0 and 2), refusing anything it
    would misread: "10.0.0" (the loader sees "1.."), "8.10.0" (it would see 8.1), "not known"."""
    v = version.strip()
    if v == "not known" or not v:
        raise CannVersionError("CANN version is not known: torch_npu found no ascend_*_install.info under "
                               "$ASCEND_HOME_PATH (source the CANN set_env.sh first)")
    m = re.match(r"^(\d+)\.(\d+)(?:$|[.\-])", v)
    if not m:
        raise CannVersionError(f"CANN version {version!r} is not of the form MAJOR.MINOR[.PATCH|.RCn|-pre]")
    major, minor = m.group(1), m.group(2)
    if len(major) != 1 or len(minor) != 1:
        raise CannVersionError(
            f"CANN version {version!r} has a two-digit major or minor version; the kernels loader builds the "
            f"variant from characters 0 and 2 of the version string (cann<X><Y>) and cannot represent it")
    return int(major), int(minor)


def cann_backend(version: str) -> str:
    """"8.2.RC1" -> "cann82"; "8.5.0" -> "cann85"; "9.2.0-beta.2" -> "cann92"."""
    return backend_string("cann", cann_mm(version))


def compiled_variant(torch_mm: tuple[int, int], cxx11: bool | None, cann_version: str, arch: str,
                     os_name: str = "linux") -> Variant:
    """`torch213-cxx11-cann82-aarch64-linux` for torch 2.13, CANN 8.2.RC1 on aarch64."""
    return Variant("torch", cann_backend(cann_version), torch_mm, cxx11, arch, os_name)


