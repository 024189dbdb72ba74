"""Publish round trip, all on 127.0.0.1 with the real clients and no stand-ins: `serve()` -> `upload()` of the
real kernels_src builds -> `kernels.get_kernel`, `kernelize` on a tiny Llama, transformers' KernelConfig, and the
`kernels lock` / `get_locked_kernel` / `load_kernel` flow, each consumer in a fresh interpreter with a fresh
HF_HUB_CACHE so only what our hub serves can load.

A wrong or missing token on upload (one clear line, nothing written) is covered by
tests/test_upload.py::test_bad_or_missing_token_is_one_clear_line; the refusal of an untrusted org without
trust_remote_code by tests/test_upload.py::test_untrusted_org_needs_trust_remote_code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

os.environ.pop("HF_HUB_DISABLE_TELEMETRY", None)  # breaks every huggingface_hub 2.4 call (CONTRACT §7)

import pytest  # noqa: E402
from huggingface_hub import HfApi  # noqa: E402

from kernel_builder.build.layout import digest_dir  # noqa: E402
from kernel_builder.hub.routes import HubApp  # noqa: E402
from kernel_builder.hub.serve import HubServer, serve  # noqa: E402
from kernel_builder.hub.upload import upload  # noqa: E402

TOKEN = "tok-roundtrip-secret"
ORG = "org"


class RecordingApp(HubApp):
    """HubApp that remembers every request line (method, raw path) so a test can assert what a client fetched."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.requests: list[tuple[str, str]] = []

    def __call__(self, environ, start_response):
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "")
        self.requests.append((environ["REQUEST_METHOD"], raw.split("?", 1)[0]))
        return super().__call__(environ, start_response)


@pytest.fixture(scope="module")
def published(built_kernels, tmp_path_factory):
    """One hub root holding org/rmsnorm (v1, v2) and org/activation (v1), uploaded through an untrusting server.

    Yields (root, token_file, untrusted_server, trusted_server): two servers over the same root, one trusting
    nobody and one trusting `org` (the trusted one is only read from)."""
    os.environ.pop("HF_HUB_DISABLE_TELEMETRY", None)
    tmp = tmp_path_factory.mktemp("publish_roundtrip")
    tokens = tmp / "tokens"
    tokens.write_text(f"{TOKEN} alice {ORG}\n")
    root = tmp / "hub"
    untrusted = serve(root, token_file=tokens)
    trusted = serve(root, token_file=tokens, trusted_orgs=[ORG])
    try:
        for name in ("rmsnorm", "activation"):
            r = upload(built_kernels[name], repo_id=f"{ORG}/{name}", endpoint=untrusted.url, token=TOKEN,
                       allow_dirty=True)
            assert r["branch"] == "v1" and r["commits"], r
        # version 2 of rmsnorm: the same variants with metadata "version": 2 (and a digest recomputed from the
        # files, which the version does not change: metadata.json is outside the digest)
        v2 = tmp / "rmsnorm-v2"
        shutil.copytree(built_kernels["rmsnorm"], v2)
        for meta_file in v2.glob("*/metadata.json"):
            meta = json.loads(meta_file.read_text())
            meta["version"] = 2
            meta["digest"] = digest_dir(meta_file.parent)
            meta_file.write_text(json.dumps(meta, indent=2) + "\n")
        r = upload(v2, repo_id=f"{ORG}/rmsnorm", endpoint=untrusted.url, token=TOKEN, allow_dirty=True)
        assert r["branch"] == "v2" and r["version"] == 2, r
        yield root, tokens, untrusted, trusted
    finally:
        untrusted.shutdown()
        trusted.shutdown()


def run_py(code: str, endpoint: str, tmp: Path, *, extra_env: dict | None = None, cwd=None,
           args: list[str] | None = None) -> subprocess.CompletedProcess:
    """`python -c code` (or `args`) in a fresh interpreter: HF_ENDPOINT=endpoint, a fresh HF_HUB_CACHE under tmp,
    no inherited HF_* variable (no token, no telemetry switch, no offline flag)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k not in ("LOCAL_KERNELS",)}
    tmp.mkdir(parents=True, exist_ok=True)
    env.update(HF_ENDPOINT=endpoint, HF_HUB_CACHE=str(tmp / "hub-cache"), HF_HOME=str(tmp / "hf-home"))
    env.update(extra_env or {})
    cmd = args if args is not None else [sys.executable, "-c", textwrap.dedent(code)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def ok(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 0, f"rc={p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    return p.stdout


ACTIVATION_CHECK = """
x = torch.randn(4, 16)
out = torch.empty(4, 8)
k.silu_and_mul(out, x)
ref = torch.nn.functional.silu(x[..., :8]) * x[..., 8:]
assert torch.allclose(out, ref, atol=1e-5), (out - ref).abs().max()
print("LOADED", k.__name__)
"""


# ---- a. upload -> get_kernel, untrusted org with trust_remote_code, trusted org without ----

def test_get_kernel_untrusted_org_with_trust_remote_code(published, tmp_path):
    _, _, untrusted, _ = published
    code = "import kernels, torch\n" \
           f"k = kernels.get_kernel('{ORG}/activation', version=1, trust_remote_code=True)\n" + ACTIVATION_CHECK
    assert "LOADED" in ok(run_py(code, untrusted.url, tmp_path))


def test_get_kernel_trusted_org_without_trust_remote_code(published, tmp_path):
    _, _, _, trusted = published
    code = "import kernels, torch\n" f"k = kernels.get_kernel('{ORG}/activation', version=1)\n" + ACTIVATION_CHECK
    assert "LOADED" in ok(run_py(code, trusted.url, tmp_path))


# ---- b. version 2 on branch v2 while version 1 still loads ----

@pytest.mark.parametrize("version", [1, 2])
def test_both_versions_load(published, tmp_path, version):
    _, _, _, trusted = published
    code = f"""
        import kernels, torch
        from pathlib import Path
        import json
        k = kernels.get_kernel('{ORG}/rmsnorm', version={version})
        meta = json.loads((Path(k.__file__).parent / "metadata.json").read_text())
        assert meta["version"] == {version}, meta["version"]
        print("LOADED", k.__name__, k.__file__)
    """
    out = ok(run_py(code, trusted.url, tmp_path))
    assert "LOADED" in out
    branches = {b.name: b.target_commit for b in HfApi(endpoint=trusted.url, token=TOKEN).list_repo_refs(
        f"{ORG}/rmsnorm", repo_type="kernel").branches}
    assert {"main", "v1", "v2"} <= set(branches) and branches["v1"] != branches["v2"]
    # the snapshot the loader used is the commit the version's branch points at
    assert branches[f"v{version}"] in out


# ---- c. transformers: kernelize with a hub LayerRepository, and KernelConfig ----

TINY_LLAMA = """
import torch
from transformers import LlamaConfig, LlamaForCausalLM
torch.manual_seed(0)
cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=128, max_position_embeddings=64)
base = LlamaForCausalLM(cfg).eval()
ids = torch.randint(0, 128, (1, 12))
with torch.no_grad():
    ref = base(ids).logits

def report(model):
    fwd = model.model.norm.forward.__func__
    print("FORWARD", fwd.__module__, fwd.__qualname__)
    assert fwd.__module__.startswith("_rmsnorm"), "RMSNorm forward was not replaced by the hub kernel layer"
    with torch.no_grad():
        out = model(ids).logits
    err = (out - ref).abs().max().item()
    print("MAXERR", err)
    assert torch.allclose(out, ref, atol=1e-4), err
"""


def test_kernelize_tiny_llama_from_our_hub(published, tmp_path):
    _, _, _, trusted = published
    code = TINY_LLAMA + f"""
import kernels
from kernels import LayerRepository, Mode, kernelize, use_kernel_mapping
mapping = {{"RMSNorm": {{"cpu": LayerRepository(repo_id="{ORG}/rmsnorm", layer_name="RMSNorm", version=1)}}}}
with use_kernel_mapping(mapping):
    kernelize(base, mode=Mode.INFERENCE, device="cpu")
report(base)
"""
    out = ok(run_py(code, trusted.url, tmp_path))
    assert "MAXERR" in out


def test_transformers_kernel_config_from_our_hub(published, tmp_path):
    _, _, _, trusted = published
    code = TINY_LLAMA + f"""
import transformers.utils.kernel_config as kc
from transformers import AutoModelForCausalLM, KernelConfig
if "cpu" not in kc.KERNELS_SUPPORTED_DEVICE_TYPES:
    kc.KERNELS_SUPPORTED_DEVICE_TYPES.append("cpu")
model = AutoModelForCausalLM.from_config(cfg)
model.load_state_dict(base.state_dict())
model.eval()
model.set_use_kernels(True, KernelConfig({{"RMSNorm": "{ORG}/rmsnorm:RMSNorm"}}))
report(model)
"""
    out = ok(run_py(code, trusted.url, tmp_path))
    assert "MAXERR" in out


# ---- d. kernels lock -> get_locked_kernel / kernels download -> load_kernel ----

@pytest.fixture
def locked_project(published, tmp_path):
    _, _, _, trusted = published
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [project]
        name = "lockdemo"
        version = "0.1.0"

        [tool.kernels.dependencies]
        "{ORG}/rmsnorm" = 1
    """))
    kernels_cli = Path(sys.executable).with_name("kernels")
    args = [str(kernels_cli)] if kernels_cli.is_file() else [sys.executable, "-m", "kernels.cli"]
    ok(run_py("", trusted.url, tmp_path / "lock", args=[*args, "lock", str(proj)]))
    locks = json.loads((proj / "kernels.lock").read_text())
    v1 = HfApi(endpoint=trusted.url, token=TOKEN).list_repo_refs(f"{ORG}/rmsnorm", repo_type="kernel")
    v1 = {b.name: b.target_commit for b in v1.branches}["v1"]
    assert v1 in json.dumps(locks), locks  # locked to the commit version 1's branch points at
    return proj, args, v1


def test_lock_then_get_locked_kernel(published, locked_project, tmp_path):
    _, _, _, trusted = published
    proj, _, v1 = locked_project
    code = f"""
        from pathlib import Path
        import kernels, torch
        k = kernels.get_locked_kernel("{ORG}/rmsnorm", lockfile=Path({str(proj / "kernels.lock")!r}))
        print("LOADED", k.__name__, k.__file__)
    """
    out = ok(run_py(code, trusted.url, tmp_path / "get"))
    assert "LOADED" in out and v1 in out


def test_lock_download_then_load_kernel_offline(published, locked_project, tmp_path):
    _, _, _, trusted = published
    proj, args, v1 = locked_project
    work = tmp_path / "dl"
    ok(run_py("", trusted.url, work, args=[*args, "download", str(proj)]))
    code = f"""
        from pathlib import Path
        import kernels, torch
        k = kernels.load_kernel("{ORG}/rmsnorm", lockfile=Path({str(proj / "kernels.lock")!r}))
        print("LOADED", k.__name__, k.__file__)
    """
    # the same cache `kernels download` filled, and no network: load_kernel never downloads
    out = ok(run_py(code, "http://127.0.0.1:9", work, extra_env={"HF_HUB_OFFLINE": "1"}))
    assert "LOADED" in out and v1 in out


# ---- e. what conformance.py --hub checks, against serve: get_kernel fetches only the chosen variant ----

def test_get_kernel_downloads_only_the_chosen_variant(published, built_kernels, tmp_path):
    root, tokens, _, _ = published
    app = RecordingApp(root, tokens, [ORG])
    srv = HubServer(app, "127.0.0.1", 0)
    try:
        ours = sorted(p.name for p in built_kernels["activation"].iterdir() if (p / "metadata.json").is_file())
        assert len(ours) == 1, ours
        (variant,) = ours
        # a decoy variant this host can never pick (another CPU architecture), on a fresh repo's v1 branch
        decoy = variant.replace("x86_64", "aarch64") if "x86_64" in variant else variant.replace("aarch64", "x86_64")
        assert decoy != variant
        upload(built_kernels["activation"], repo_id=f"{ORG}/act-decoy", endpoint=srv.url, token=TOKEN,
               allow_dirty=True)
        HfApi(endpoint=srv.url, token=TOKEN).upload_folder(
            repo_id=f"{ORG}/act-decoy", repo_type="kernel", revision="v1",
            folder_path=str(built_kernels["activation"] / variant), path_in_repo=f"build/{decoy}",
            commit_message="decoy variant")
        app.requests.clear()
        code = "import kernels, torch\n" f"k = kernels.get_kernel('{ORG}/act-decoy', version=1)\n" + ACTIVATION_CHECK
        ok(run_py(code, srv.url, tmp_path))
        reqs = list(app.requests)
    finally:
        srv.shutdown()
    paths = [p for _, p in reqs]
    # the order CONTRACT §6 names: publisher trust, refs, the build/ listing, then the chosen variant's files
    def first(pred):
        return next(i for i, p in enumerate(paths) if pred(p))
    i_org = first(lambda p: p == f"/api/organizations/{ORG}/overview")
    i_refs = first(lambda p: p == f"/api/kernels/{ORG}/act-decoy/refs")
    i_tree = first(lambda p: p.startswith(f"/api/kernels/{ORG}/act-decoy/tree/") and p.endswith("/build"))
    resolves = [p for p in paths if "/resolve/" in p]
    assert resolves and i_org < i_refs < i_tree < first(lambda p: "/resolve/" in p), reqs
    assert all(f"/build/{variant}/" in p for p in resolves), resolves
    assert not any(decoy in p for p in paths if "/resolve/" in p), resolves
    # and from the client side: the cache holds the chosen variant's files and nothing of the decoy
    cached = [p.relative_to(tmp_path / "hub-cache") for p in (tmp_path / "hub-cache").rglob("*")
              if p.is_file() or p.is_symlink()]
    snap = [p for p in cached if "snapshots" in p.parts]
    assert snap and all(variant in p.parts for p in snap), snap
    assert not any(decoy in str(p) for p in cached), cached
    n_local = len([p for p in (built_kernels["activation"] / variant).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts])
    assert len(snap) == n_local, (snap, n_local)
