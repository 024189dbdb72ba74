"""`upload` and `mirror` against `serve()` on 127.0.0.1, with the real huggingface_hub client and the real `kernels`
loader (in a subprocess with a fresh HF_HUB_CACHE), on real builds."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

os.environ.pop("HF_HUB_DISABLE_TELEMETRY", None)  # breaks every huggingface_hub 2.4 call (CONTRACT §7)

import pytest  # noqa: E402
from huggingface_hub import CommitOperationAdd, HfApi  # noqa: E402

from kernel_builder import settings  # noqa: E402
from kernel_builder.errors import CheckFailed, HubAuthError, HubNetworkError, HubRepoNotFound, UsageError  # noqa: E402
from kernel_builder.hub.mirror import mirror  # noqa: E402
from kernel_builder.hub.serve import serve  # noqa: E402
from kernel_builder.hub.upload import upload  # noqa: E402

from conftest import REPO, build_project  # noqa: E402

TOKEN = "tok-upload-secret"
PROJECT = REPO / "tests" / "projects" / "hf_docs_style"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """tests/projects/hf_docs_style built once for this module (a CPU build), in a private cache."""
    tmp = tmp_path_factory.mktemp("upload_build")
    build_project(PROJECT, tmp / "build", env={"KERNEL_BUILDER_CACHE": str(tmp / "cache")})
    return tmp / "build"


@pytest.fixture(scope="module")
def noarch(tmp_path_factory) -> Path:
    """A pure-Python kernel with two variants (torch-cpu, torch-npu): no compile, a committed git checkout."""
    tmp = tmp_path_factory.mktemp("upload_noarch")
    proj = tmp / "pyk"
    (proj / "torch-ext" / "py_relu").mkdir(parents=True)
    (proj / "build.toml").write_text('[general]\nname = "py-relu"\nversion = 2\nedition = 5\nlicense = "MIT"\n'
                                     'backends = ["cpu", "cann"]\n\n[general.hub]\nrepo-id = "acme/py-relu"\n\n'
                                     '[torch-noarch]\n')
    (proj / "torch-ext" / "py_relu" / "__init__.py").write_text(
        "import torch\nfrom ._ops import add_op_namespace_prefix\n\n"
        "def relu(x: torch.Tensor) -> torch.Tensor:\n    return x.clamp_min(0)\n\n__all__ = ['relu']\n")
    for args in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "k"]):
        subprocess.run(["git", "-C", str(proj), *args], check=True, capture_output=True)
    build_project(proj, proj / "build", env={"KERNEL_BUILDER_CACHE": str(tmp / "cache")})
    return proj


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_DISABLE_TELEMETRY", raising=False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    settings.reload()
    (tmp_path / "tokens").write_text(f"{TOKEN} alice acme\n")
    srv = serve(tmp_path / "hub", token_file=tmp_path / "tokens", trusted_orgs=["acme"])
    yield srv
    srv.shutdown()


def get_kernel(endpoint: str, repo: str, version: int, cache: Path, code: str = "") -> subprocess.CompletedProcess:
    """`kernels.get_kernel` in a fresh interpreter with a fresh hub cache: only what the hub serves can load."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint, HF_HUB_CACHE=str(cache), HF_HOME=str(cache.parent / "hf-home"))
    script = (f"import kernels, torch\nk = kernels.get_kernel({repo!r}, version={version})\n"
              f"print('LOADED', k.__name__)\n{code}")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)


def files(endpoint, repo, rev):
    return HfApi(endpoint=endpoint, token=TOKEN).list_repo_files(repo, revision=rev, repo_type="kernel")


def test_upload_then_get_kernel(built, hub, tmp_path):
    out = tmp_path / "result.json"
    result = upload(built, project=PROJECT, endpoint=hub.url, output_json=out, allow_dirty=True)
    assert result["repo_id"] == "acme/relu-docs" and result["branch"] == "v1"  # repo id from [general.hub]
    assert json.loads(out.read_text())["commits"][0]["oid"] == result["commits"][0]["oid"]
    variant = next(built.iterdir()).name
    assert f"build/{variant}/metadata.json" in files(hub.url, "acme/relu-docs", "v1")
    api = HfApi(endpoint=hub.url, token=TOKEN)
    readme = Path(api.hf_hub_download("acme/relu-docs", "README.md", repo_type="kernel",
                                      cache_dir=tmp_path / "c")).read_text()
    assert 'get_kernel("acme/relu-docs", version=1)' in readme and "`relu`" in readme and variant in readme
    p = get_kernel(hub.url, "acme/relu-docs", 1, tmp_path / "cache",
                   "assert torch.equal(k.relu(torch.tensor([-1.0, 2.0])), torch.tensor([0.0, 2.0]))")
    assert p.returncode == 0 and "LOADED" in p.stdout, p.stderr[-3000:]


def test_reupload_replaces_only_the_uploaded_variants(noarch, hub, tmp_path):
    upload(noarch / "build", endpoint=hub.url)
    api = HfApi(endpoint=hub.url, token=TOKEN)
    npu_before = {e.path: e.blob_id for e in api.list_repo_tree("acme/py-relu", path_in_repo="build/torch-npu",
                                                                revision="v2", recursive=True, repo_type="kernel")}
    # upload only torch-cpu, with an extra file; then again without it: the stale file must go
    cpu = tmp_path / "only" / "torch-cpu"
    shutil.copytree(noarch / "build" / "torch-cpu", cpu)
    (cpu / "extra.py").write_text("X = 1\n")
    (cpu / "__pycache__").mkdir()
    (cpu / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    with pytest.raises(CheckFailed):  # check_tree refuses a file the digest does not list
        upload(cpu.parent, repo_id="acme/py-relu", endpoint=hub.url)
    (cpu / "extra.py").unlink()
    meta = json.loads((cpu / "metadata.json").read_text())
    remote = "build/torch-cpu/stale.txt"
    api.create_commit("acme/py-relu", [CommitOperationAdd(remote, b"old")],
                      commit_message="a stale file", revision="v2", repo_type="kernel")
    result = upload(cpu.parent, repo_id="acme/py-relu", endpoint=hub.url)
    assert result["deleted"] == [remote] and result["variants"] == ["torch-cpu"]
    listing = files(hub.url, "acme/py-relu", "v2")
    assert remote not in listing and not any("__pycache__" in f or f.endswith(".pyc") for f in listing)
    npu_after = {e.path: e.blob_id for e in api.list_repo_tree("acme/py-relu", path_in_repo="build/torch-npu",
                                                               revision="v2", recursive=True, repo_type="kernel")}
    assert npu_after == npu_before and npu_before
    assert meta["version"] == 2
    p = get_kernel(hub.url, "acme/py-relu", 2, tmp_path / "cache",
                   "assert torch.equal(k.relu(torch.tensor([-1.0])), torch.tensor([0.0]))")
    assert p.returncode == 0, p.stderr[-3000:]


def test_dry_run_writes_nothing(noarch, hub, tmp_path, capsys):
    result = upload(noarch / "build", endpoint=hub.url, dry_run=True, output_json=tmp_path / "plan.json")
    assert "build/torch-cpu/metadata.json" in capsys.readouterr().out
    assert json.loads((tmp_path / "plan.json").read_text())["dry_run"] is True and not result["commits"]
    assert not (Path(hub.app.store.root) / "acme").exists()


def _upload_in_subprocess(noarch, endpoint, tmp_path, token):
    """Through a fresh interpreter with an empty HF_HOME, so no saved login can stand in for the token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["HF_HOME"] = str(tmp_path / "empty-home")
    if token:
        env["HF_TOKEN"] = token
    code = ("import sys\nfrom kernel_builder.hub.upload import upload\nfrom kernel_builder.errors import KernelBuilderError\n"
            f"try:\n    upload({str(noarch / 'build')!r}, endpoint={endpoint!r})\n"
            "except KernelBuilderError as e:\n    print(type(e).__name__, e)\n    sys.exit(e.exit_code)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("token,error", [(None, "HubAuthError"), ("wrong-token-value", "HubAuthError")])
def test_bad_or_missing_token_is_one_clear_line(noarch, hub, tmp_path, token, error):
    p = _upload_in_subprocess(noarch, hub.url, tmp_path, token)
    assert p.returncode == HubAuthError.exit_code and error in p.stdout, p.stdout + p.stderr
    assert "Traceback" not in p.stderr and "wrong-token-value" not in p.stdout + p.stderr


def test_unreachable_hub(noarch, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = _upload_in_subprocess(noarch, f"http://127.0.0.1:{port}", tmp_path, TOKEN)
    assert p.returncode == HubNetworkError.exit_code and "cannot reach" in p.stdout, p.stdout + p.stderr


def test_refusals_before_any_network(noarch, built, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(noarch / "build", mixed)
    meta = json.loads((mixed / "torch-npu" / "metadata.json").read_text())
    meta["version"] = 3
    (mixed / "torch-npu" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(UsageError, match="disagree"):
        upload(mixed, repo_id="acme/x", endpoint="http://127.0.0.1:9", dry_run=True)
    dirty = tmp_path / "dirty"
    shutil.copytree(noarch / "build", dirty)
    for m in dirty.glob("*/metadata.json"):
        d = json.loads(m.read_text())
        d["provenance"]["kernel"]["dirty"] = True
        m.write_text(json.dumps(d))
    with pytest.raises(UsageError, match="allow-dirty"):
        upload(dirty, repo_id="acme/x", endpoint="http://127.0.0.1:9", dry_run=True)
    with pytest.raises(UsageError, match="repo-id"):
        upload(noarch / "build", project=tmp_path, endpoint="http://127.0.0.1:9", dry_run=True)


def test_missing_repo_on_mirror_source(hub, tmp_path):
    with pytest.raises(HubRepoNotFound):
        mirror(hub.url, hub.url, "acme/nothing", 1, src_token=TOKEN, dst_token=TOKEN)


def test_mirror_serve_to_serve(noarch, hub, tmp_path):
    upload(noarch / "build", endpoint=hub.url)
    (tmp_path / "t2").write_text("tok-second bob acme\n")
    second = serve(tmp_path / "hub2", token_file=tmp_path / "t2", trusted_orgs=["acme"])
    try:
        result = mirror(hub.url, second.url, "acme/py-relu", 2, src_token=TOKEN, dst_token="tok-second")
        assert result["branch"] == "v2" and sorted(result["variants"]) == ["torch-cpu", "torch-npu"]
        assert files(second.url, "acme/py-relu", "v2") == files(hub.url, "acme/py-relu", "v2")
        p = get_kernel(second.url, "acme/py-relu", 2, tmp_path / "cache",
                       "assert torch.equal(k.relu(torch.tensor([-3.0])), torch.tensor([0.0]))")
        assert p.returncode == 0, p.stderr[-3000:]
    finally:
        second.shutdown()


def test_untrusted_org_needs_trust_remote_code(noarch, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    settings.reload()
    (tmp_path / "tokens").write_text(f"{TOKEN} alice acme\n")
    srv = serve(tmp_path / "hub", token_file=tmp_path / "tokens")  # no trusted orgs
    try:
        upload(noarch / "build", endpoint=srv.url)
        p = get_kernel(srv.url, "acme/py-relu", 2, tmp_path / "cache")
        assert p.returncode != 0 and "trust_remote_code" in p.stderr
    finally:
        srv.shutdown()


def test_command_line_options_and_one_commit_for_any_size(noarch, hub, tmp_path):
    """The argparse helpers the CLI wires, and a tree of more files than the old 200-file batches: one commit,
    so an interrupted upload can never leave a branch half old, half new."""
    from kernel_builder.hub import upload as up
    from kernel_builder.cli import parser

    big = tmp_path / "big"
    shutil.copytree(noarch / "build", big)
    for i in range(250):
        (big / "torch-cpu" / f"extra_{i:03d}.py").write_text(f"X = {i}\n")
    subprocess.run([sys.executable, str(REPO / "scripts" / "atomic_upload_check.py"), "--redigest", str(big)],
                   check=True, capture_output=True)
    args = parser().parse_args(["upload", str(big), "--repo-id", "acme/py-relu", "--endpoint", hub.url,
                                "--output-json", str(tmp_path / "r.json")])
    assert up.run(args) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert len(result["commits"]) == 1 and result["repo_id"] == "acme/py-relu" and len(result["added"]) > 250
    assert set(files(hub.url, "acme/py-relu", "v2")) == set(result["added"])
    git_dir = Path(hub.app.store.root) / "acme" / "py-relu.git"
    log = subprocess.run(["git", "--git-dir", str(git_dir), "log", "--format=%s", "v2"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert log == ["Upload torch-cpu, torch-npu (version 2)", "initial commit"]


def test_two_hosts_upload_different_variants_at_once(noarch, hub, tmp_path):
    """Like two build hosts each publishing what they built: both variants land, neither deletes the other."""
    import threading

    errors = []

    def one(variant):
        d = tmp_path / variant / "build"
        shutil.copytree(noarch / "build" / variant, d / variant)
        try:
            upload(d, repo_id="acme/py-relu", endpoint=hub.url)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(v,)) for v in ("torch-cpu", "torch-npu")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    expected = {f"build/{p.relative_to(noarch / 'build').as_posix()}" for p in (noarch / "build").rglob("*")
                if p.is_file()}
    assert set(files(hub.url, "acme/py-relu", "v2")) == expected


def test_interrupted_uploads_leave_the_old_tree_or_the_new_one():
    """The small version of scripts/atomic_upload_check.py (the full one: 2,000 files, 1 GB, 20 rounds): an
    upload of the CLI sent SIGINT at random moments, then the branch is one generation whole and get_kernel
    loads that one."""
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "atomic_upload_check.py"), "--files", "40",
                        "--size-mb", "4", "--rounds", "3", "--seed", "7"], capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    summary = p.stdout.strip().splitlines()[-1]
    assert "mixed 0" in summary and "loads matching the tree 3" in summary, p.stdout


def test_cli_hub_errors_are_one_line_with_their_exit_code(noarch, hub, tmp_path):
    """A wrong token on an existing repo (once an HfUriError traceback), a malformed repo id, an unreachable
    mirror source: one line each, exit 6 / 2 / 7, no traceback unless --debug, and never the token."""
    HfApi(endpoint=hub.url, token=TOKEN).create_repo("acme/py-relu", repo_type="kernel")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["HF_HOME"] = str(tmp_path / "empty-home")

    def cli(*args, token=None):
        e = dict(env, **({"HF_TOKEN": token} if token else {}))
        return subprocess.run([sys.executable, "-m", "kernel_builder", *map(str, args)], capture_output=True,
                              text=True, env=e, timeout=300)

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    build = noarch / "build"
    cases = [(cli("upload", build, "--endpoint", hub.url, token="wrong-token-value"), 6, "403"),
             (cli("upload", build, "--repo-id", "acme/../x", "--endpoint", hub.url, token=TOKEN), 2, "not a repo id"),
             (cli("upload", build, "--repo-id", "acme/" + "x" * 100_000, "--endpoint", hub.url, token=TOKEN), 2,
              "100005 characters"),
             (cli("mirror", "acme/py-relu", "--version", "2", "--from", dead, "--to", hub.url, token=TOKEN), 7,
              "cannot reach")]
    for p, code, words in cases:
        lines = p.stderr.strip().splitlines()
        assert p.returncode == code and len(lines) == 1 and words in lines[0], (p.args[3:6], p.returncode, p.stderr)
        assert len(lines[0]) <= 500 and "wrong-token-value" not in p.stdout + p.stderr
    p = cli("--debug", "mirror", "acme/py-relu", "--version", "2", "--from", dead, "--to", hub.url, token=TOKEN)
    assert p.returncode == 7 and "Traceback" in p.stderr
    assert files(hub.url, "acme/py-relu", "main") == []  # nothing was written by any of them
