"""Variant names against the loader's own parser and resolver (kernels 0.17.2)."""

from __future__ import annotations

import itertools

import pytest

from kernel_builder import backends, variants as V
from kernel_builder.build.host import detect

kv = pytest.importorskip("kernels.variants", reason="the kernels package is the oracle for variant names")


def generated_names() -> list[str]:
    names = []
    for (maj, mnr), backend, arch, os_ in itertools.product(
            [(2, 8), (2, 9), (2, 10), (2, 11), (2, 13), (2, 14)],
            ["cpu", "cu118", "cu126", "cu128", "cu129", "cu130", "cann82", "cann85", "cann90", "rocm64", "xpu20252", "metal"],
            ["x86_64", "aarch64"], ["linux", "darwin"]):
        for cxx11 in ([True, False] if os_ == "linux" else [None]):
            names.append(V.Variant("torch", backend, (maj, mnr), cxx11, arch, os_).name)
        names.append(V.Variant("stable", backend, (maj, mnr), None, arch, os_).name)
    names += [V.Variant("noarch", b).name for b in [f.noarch for f in V.FAMILIES.values()] + [V.UNIVERSAL]]
    return names


def test_every_generated_name_parses_the_same_in_the_loader():
    for name in generated_names():
        ours = V.parse(name)
        assert ours.name == name
        theirs = kv.parse_variant(name)
        assert theirs.variant_str == name
        if ours.kind != "noarch":
            assert str(theirs.framework.version) == f"{ours.torch[0]}.{ours.torch[1]}"
            assert theirs.arch.platform == ours.arch and theirs.arch.os == ours.os
            assert theirs.arch.backend.variant_str == ours.backend
            if ours.backend_version:
                assert (theirs.arch.backend.version.major, theirs.arch.backend.version.minor) == ours.backend_version


def test_backend_strings():
    assert V.backend_string("cuda", "13.0") == "cu130"
    assert V.backend_string("cann", "8.2") == "cann82"
    assert V.backend_version("cu128") == (12, 8) and V.backend_version("cann90") == (9, 0)
    with pytest.raises(ValueError):
        V.backend_string("cuda", (12, 10))  # the loader reads one minor digit
    for bad in ["torch213-cpu", "torch-", "torch213-cxx11-gpu-x86_64-linux", "tvm-ffi01-cpu-x86_64-linux", "foo"]:
        with pytest.raises(ValueError):
            V.parse(bad)


def test_host_detection_picks_what_the_resolver_picks(tmp_path):
    host = detect()
    mine = backends.get("cpu").variant(host).name
    others = [n for n in generated_names() if n != mine and "stable" not in n and not n.startswith("torch-")]
    (tmp_path / mine).mkdir()
    for n in others[:200]:
        (tmp_path / n).mkdir()
    chosen, _ = kv.resolve_variant(kv.get_variants_local(tmp_path), "cpu")
    assert chosen is not None and chosen.variant_str == mine
