"""CUTLASS the way users get it (issue 14, item 3): an include dir, else PyPI's nvidia-cutlass at a pinned
release, else the source release of tag vX.Y.0, downloaded once into the cache, verified and extracted safely.

The real source host is not reachable here: each test serves a tarball it makes itself from an HTTP server
on 127.0.0.1 and points KERNEL_BUILDER_CUTLASS_URL at it.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import KERNELS_SRC, run_cli
from kernel_builder import settings
from kernel_builder.build import deps
from kernel_builder.errors import EnvironmentProblem

VERSION_H = "#pragma once\n#define CUTLASS_MAJOR {}\n#define CUTLASS_MINOR {}\n#define CUTLASS_PATCH 0\n"
CLOSED = "http://127.0.0.1:9/cutlass.tar.gz"  # the discard port: nothing listens, the connection is refused


class Server:
    """Serves `files` (path -> bytes) on 127.0.0.1; anything else is a 404. `hits` counts every request."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits.append(self.path)
                body = server.files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def serve(self, path: str, body: bytes) -> str:
        self.files[path] = body
        return self.url(path)


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def tarball(*entries) -> bytes:
    """A .tar.gz of entries: (name, bytes) for a file, (name, "->", target) for a symlink, (name, "=>", target)
    for a hard link."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, *rest in entries:
            info = tarfile.TarInfo(name)
            if len(rest) == 2:
                info.type = tarfile.SYMTYPE if rest[0] == "->" else tarfile.LNKTYPE
                info.linkname = rest[1]
                tar.addfile(info)
            else:
                info.size = len(rest[0])
                tar.addfile(info, io.BytesIO(rest[0]))
    return buf.getvalue()


def cutlass_source(major=4, minor=0, *extra) -> bytes:
    top = f"cutlass-{major}.{minor}.0"
    return tarball((f"{top}/README.md", b"CUTLASS\n"),
                   (f"{top}/include/cutlass/version.h", VERSION_H.format(major, minor).encode()),
                   (f"{top}/include/cutlass/cutlass.h", b"#pragma once\n#include <cutlass/version.h>\n"),
                   (f"{top}/include/cute/tensor.hpp", b"#pragma once\n"),
                   (f"{top}/tools/util/include/cutlass/util/x.h", b"#pragma once\n"), *extra)


def use(monkeypatch, url: str | None = None, sha: str | None = None) -> None:
    for name, value in (("KERNEL_BUILDER_CUTLASS_URL", url), ("KERNEL_BUILDER_CUTLASS_SHA256", sha)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    settings.reload()


def fetch(dep: str = "cutlass_4_0") -> list[str]:
    return deps.include_dirs(dep, Path("build.toml"), "k")


def files_under(root: Path, skip: Path) -> set[Path]:
    return {p for p in root.rglob("*") if skip not in p.parents and p != skip}


# --------------------------------------------------------------------------------------------------
# Resolution order; planning downloads nothing
# --------------------------------------------------------------------------------------------------


def test_pypi_pins_come_before_the_source_release(private_cache, monkeypatch):
    use(monkeypatch, url=CLOSED)
    for dep, pin in (("cutlass_3_5", "3.5.1.0"), ("cutlass_3_7", "3.7.0.0"), ("cutlass_3_8", "3.8.0.0"),
                     ("cutlass_4_2", "4.2.0.0")):
        d = deps.resolve(dep, Path("build.toml"), "k")
        assert (d.pinned, d.url) == (pin, None), dep
        assert d.include == str(private_cache / "deps" / f"nvidia-cutlass-{pin}" / "include")
    assert not private_cache.exists()


def test_other_versions_resolve_to_the_source_release_without_downloading(private_cache, monkeypatch):
    use(monkeypatch)
    d = deps.resolve("cutlass_4_0", Path("build.toml"), "k")
    assert d.url == "https://github.com/NVIDIA/cutlass/archive/refs/tags/v4.0.0.tar.gz" and d.pinned is None
    assert d.sha256 == deps.CUTLASS_SHA256.get("v4.0.0") and Path(d.include).is_relative_to(private_cache)
    use(monkeypatch, url="http://mirror.invalid/cutlass/{tag}.tar.gz", sha="AB" * 32)
    d2 = deps.resolve("cutlass_3_9", Path("build.toml"), "k")
    assert (d2.url, d2.sha256) == ("http://mirror.invalid/cutlass/v3.9.0.tar.gz", "ab" * 32)
    assert d2.key == f"cutlass_3_9=http://mirror.invalid/cutlass/v3.9.0.tar.gz#sha256={'ab' * 32}"
    assert not private_cache.exists()


def test_an_include_dir_comes_first(tmp_path, private_cache, monkeypatch):
    inc = tmp_path / "c40" / "include"
    (inc / "cutlass").mkdir(parents=True)
    (inc / "cutlass" / "version.h").write_text(VERSION_H.format(4, 0))
    monkeypatch.setenv("KERNEL_BUILDER_CUTLASS_4_0", str(inc))
    use(monkeypatch, url=CLOSED)
    assert fetch() == [str(inc)] and not private_cache.exists()


def test_a_malformed_sha256_is_an_environment_problem(private_cache, monkeypatch):
    use(monkeypatch, sha="not-a-digest")
    with pytest.raises(EnvironmentProblem, match="KERNEL_BUILDER_CUTLASS_SHA256"):
        deps.resolve("cutlass_4_0", Path("build.toml"), "k")


def _activation_with(tmp_path: Path, dep: str) -> Path:
    root = tmp_path / "activation"
    shutil.copytree(KERNELS_SRC / "activation", root, ignore=shutil.ignore_patterns("build", "__pycache__"))
    text = (root / "build.toml").read_text()
    head, sep, tail = text.partition("[kernel.activation_cuda]")
    assert sep, "kernels_src/activation has no [kernel.activation_cuda] table"
    (root / "build.toml").write_text(head + sep + tail.replace('depends = ["torch"]', f'depends = ["torch", "{dep}"]', 1))
    return root


def test_list_variants_and_ci_never_download(tmp_path, private_cache, server):
    root = _activation_with(tmp_path, "cutlass_4_0")
    env = {"KERNEL_BUILDER_CUTLASS_URL": server.serve("/v4.0.0.tar.gz", cutlass_source())}
    r = run_cli("list-variants", root, "--all", env=env)
    assert "torch211-cxx11-cu130-x86_64-linux" in r.stdout
    run_cli("ci", "github", root, "-o", tmp_path / "wf.yml", env=env)
    run_cli("build", root, "--all", "--dry-run", "--variant", "torch211-*-cu130-*", "--base-image", "local/x",
            env=env, check=False)  # needs no engine to plan; the engine may be missing here
    assert server.hits == [] and not (private_cache / "deps").exists()


# --------------------------------------------------------------------------------------------------
# Fetching a source release
# --------------------------------------------------------------------------------------------------


def test_cutlass_4_0_is_fetched_once_and_resolves_to_its_include(tmp_path, private_cache, monkeypatch, server, capsys):
    url = server.serve("/v4.0.0.tar.gz", cutlass_source())
    use(monkeypatch, url=url)
    d = deps.resolve("cutlass_4_0", Path("build.toml"), "k")
    assert d.url == url and d.sha256 is None and not Path(d.include).exists()
    assert fetch() == [d.include]
    inc = Path(d.include)
    assert deps._cutlass_version(inc) == (4, 0) and (inc / "cute" / "tensor.hpp").is_file()
    assert sorted(p.relative_to(inc).as_posix() for p in inc.rglob("*") if p.is_file()) == \
        ["cute/tensor.hpp", "cutlass/cutlass.h", "cutlass/version.h"]  # include/ only, not tools/ or README
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unverified" in err and url in err
    assert fetch() == [d.include] and server.hits == ["/v4.0.0.tar.gz"]  # once
    assert capsys.readouterr().err == ""


def test_the_right_sha256_is_accepted_without_a_warning(private_cache, monkeypatch, server, capsys):
    body = cutlass_source()
    use(monkeypatch, url=server.serve("/c.tar.gz", body), sha=hashlib.sha256(body).hexdigest().upper())
    (inc,) = fetch()
    assert deps._cutlass_version(Path(inc)) == (4, 0) and capsys.readouterr().err == ""


def test_a_wrong_sha256_is_refused_in_one_line(private_cache, monkeypatch, server):
    url = server.serve("/c.tar.gz", cutlass_source())
    use(monkeypatch, url=url, sha="0" * 64)
    with pytest.raises(EnvironmentProblem) as e:
        fetch()
    msg = str(e.value)
    assert e.value.exit_code == 3 and "\n" not in msg and "sha256" in msg and "0" * 64 in msg and url in msg
    assert not Path(deps.resolve("cutlass_4_0", Path("b"), "k").include).exists()


@pytest.mark.parametrize("served", [True, False], ids=["http-404", "connection-refused"])
def test_nothing_served_is_one_line_naming_the_url_and_the_variables(private_cache, monkeypatch, server, served):
    url = server.url("/missing.tar.gz") if served else CLOSED
    use(monkeypatch, url=url)
    with pytest.raises(EnvironmentProblem) as e:
        fetch()
    msg = str(e.value)
    assert e.value.exit_code == 3 and "\n" not in msg and url in msg and "CUTLASS 4.0" in msg
    for var in ("KERNEL_BUILDER_CUTLASS_4_0", "KERNEL_BUILDER_CUTLASS_URL", "KERNEL_BUILDER_CUTLASS_SHA256"):
        assert var in msg


def test_build_stops_with_exit_3_when_nothing_serves_it(tiny_project, tmp_path, private_cache):
    text = (tiny_project / "build.toml").read_text().replace('depends = ["torch"]', 'depends = ["torch", "cutlass_4_0"]')
    (tiny_project / "build.toml").write_text(text)
    r = run_cli("build", tiny_project, "--out", tmp_path / "out", env={"KERNEL_BUILDER_CUTLASS_URL": CLOSED}, check=False)
    assert r.returncode == 3, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "cutlass_4_0" in line and CLOSED in line and "KERNEL_BUILDER_CUTLASS_4_0" in line
    assert "KERNEL_BUILDER_CUTLASS_URL" in line and "KERNEL_BUILDER_CUTLASS_SHA256" in line


def test_a_release_of_another_version_is_refused(private_cache, monkeypatch, server):
    use(monkeypatch, url=server.serve("/c.tar.gz", cutlass_source(3, 9)))
    with pytest.raises(EnvironmentProblem, match=r"holds CUTLASS 3\.9, not 4\.0"):
        fetch()


TOP = "cutlass-4.0.0"


@pytest.mark.parametrize("evil", [
    pytest.param(lambda out: (f"{TOP}/include/../../evil.h", b"x"), id="dotdot-path"),
    pytest.param(lambda out: (str(out / "evil.h"), b"x"), id="absolute-path"),
    pytest.param(lambda out: (f"{TOP}/include/cutlass/evil.h", "->", str(out / "evil.h")), id="absolute-symlink"),
    pytest.param(lambda out: (f"{TOP}/include/cutlass/evil.h", "->", "../../../../../evil.h"), id="symlink-out"),
    pytest.param(lambda out: (f"{TOP}/docs/evil", "->", "../../../outside"), id="symlink-out-beside-include"),
    pytest.param(lambda out: (f"{TOP}/include/cutlass/evil.h", "=>", "../outside/evil.h"), id="hardlink-out"),
    pytest.param(lambda out: (f"{TOP}/include/cutlass/alias.h", "->", "version.h"), id="symlink-in-include"),
])
def test_a_malicious_tarball_is_refused_and_writes_nothing_outside_the_cache(tmp_path, private_cache, monkeypatch,
                                                                              server, evil):
    out = tmp_path / "outside"
    out.mkdir()
    before = files_under(tmp_path, private_cache)
    url = server.serve("/evil.tar.gz", cutlass_source(4, 0, evil(out)))
    use(monkeypatch, url=url)
    with pytest.raises(EnvironmentProblem, match="archive refused") as e:
        fetch()
    assert "\n" not in str(e.value) and url in str(e.value)
    assert files_under(tmp_path, private_cache) == before and not (out / "evil.h").exists()
    assert not Path(deps.resolve("cutlass_4_0", Path("b"), "k").include).exists()
    assert not [p for p in private_cache.rglob("*") if p.is_symlink() or p.name.startswith("evil")]


@pytest.mark.parametrize("limit", ["MAX_MEMBERS", "MAX_INCLUDE"])
def test_size_and_count_limits(private_cache, monkeypatch, server, limit):
    monkeypatch.setattr(deps, limit, 3 if limit == "MAX_MEMBERS" else 40)
    use(monkeypatch, url=server.serve("/c.tar.gz", cutlass_source()))
    with pytest.raises(EnvironmentProblem, match="archive refused: (more than 3 entries|include/ is larger)"):
        fetch()


def test_an_archive_without_include_cutlass_is_refused(private_cache, monkeypatch, server):
    use(monkeypatch, url=server.serve("/c.tar.gz", tarball(("x/README.md", b"hi\n"))))
    with pytest.raises(EnvironmentProblem, match="no single include/cutlass/version.h"):
        fetch()
    use(monkeypatch, url=server.serve("/n.tar.gz", b"not a tarball"))
    with pytest.raises(EnvironmentProblem, match="archive refused"):
        fetch()


def test_a_cpu_kernel_compiles_against_the_fetched_headers(tiny_project, tmp_path, private_cache, server):
    """End to end: `build` fetches cutlass_4_0 from the server and the kernel sees <cutlass/version.h>."""
    text = (tiny_project / "build.toml").read_text().replace('depends = ["torch"]', 'depends = ["torch", "cutlass_4_0"]')
    (tiny_project / "build.toml").write_text(text)
    src = tiny_project / "relu_cpu" / "relu.cpp"
    src.write_text('#include <cutlass/version.h>\nstatic_assert(CUTLASS_MAJOR == 4 && CUTLASS_MINOR == 0, "4.0");\n'
                   + src.read_text())
    url = server.serve("/v4.0.0.tar.gz", cutlass_source())
    r = run_cli("build", tiny_project, "--out", tmp_path / "out", env={"KERNEL_BUILDER_CUTLASS_URL": url})
    assert server.hits == ["/v4.0.0.tar.gz"] and "unverified" in r.stderr
    assert any((tmp_path / "out").rglob("metadata.json"))
