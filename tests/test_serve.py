"""`kernel-builder serve`: the private hub, driven by the real huggingface_hub client and raw HTTP where a client
would never send what we need to prove is refused."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import threading
import urllib.error
import urllib.request

os.environ.pop("HF_HUB_DISABLE_TELEMETRY", None)  # breaks every huggingface_hub 2.4 call (CONTRACT §7)

import pytest  # noqa: E402
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi  # noqa: E402
from huggingface_hub.errors import HfHubHTTPError  # noqa: E402

from kernel_builder.hub.serve import serve  # noqa: E402

TOKEN = "tok-write-1"


@pytest.fixture
def hub(tmp_path):
    (tmp_path / "tokens").write_text(f"# comment\n{TOKEN} alice acme\n")
    srv = serve(tmp_path / "root", token_file=tmp_path / "tokens", trusted_orgs=["acme"])
    srv.root = tmp_path / "root"
    yield srv
    srv.shutdown()


@pytest.fixture
def api(hub):
    return HfApi(endpoint=hub.url, token=TOKEN)


@pytest.fixture
def repo(api):
    api.create_repo("acme/k", repo_type="kernel")
    api.create_branch("acme/k", branch="v1", repo_type="kernel")
    return "acme/k"


def http(url, method="GET", body: bytes | None = None, token=TOKEN, ctype="application/x-ndjson"):
    """Raw request: (status, headers, body bytes)."""
    req = urllib.request.Request(url, data=body, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def ndjson(*items) -> bytes:
    return b"".join(json.dumps(i).encode() + b"\n" for i in items)


def add(path, data=b"x"):
    return {"key": "file", "value": {"path": path, "content": base64.b64encode(data).decode(), "encoding": "base64"}}


HEADER = {"key": "header", "value": {"summary": "s", "description": ""}}


def head(api, rev="v1"):
    return api.kernel_info("acme/k", revision=rev).sha


def test_commit_tree_download_roundtrip(hub, api, repo, tmp_path):
    api.create_commit(repo, [CommitOperationAdd("build/a/x.py", b"print(1)\n"), CommitOperationAdd("build/a/d/y", b"y")],
                      commit_message="one", revision="v1", repo_type="kernel")
    tree = {(e.path, type(e).__name__) for e in api.list_repo_tree(repo, revision="v1", recursive=True,
                                                                      repo_type="kernel")}
    assert {("build", "RepoFolder"), ("build/a/d", "RepoFolder"), ("build/a/x.py", "RepoFile")} <= tree
    assert [e.path for e in api.list_repo_tree(repo, path_in_repo="build", revision="v1", repo_type="kernel")] == \
        ["build/a"]
    api.create_commit(repo, [CommitOperationDelete("build/a/d/")], commit_message="two", revision="v1",
                      repo_type="kernel")
    assert api.list_repo_files(repo, revision="v1", repo_type="kernel") == ["build/a/x.py"]
    refs = {b.name: b.target_commit for b in api.list_repo_refs(repo, repo_type="kernel").branches}
    assert set(refs) == {"main", "v1"} and refs["v1"] == head(api)
    # real history: two commits on top of the initial one, in the bare git repo
    log = subprocess.run(["git", "--git-dir", str(hub.root / "acme" / "k.git"), "log", "--format=%s", "v1"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert log == ["two", "one", "initial commit"]
    from huggingface_hub import hf_hub_download

    f = hf_hub_download(repo, "build/a/x.py", repo_type="kernel", revision="v1", endpoint=hub.url,
                        cache_dir=tmp_path / "c")
    assert open(f).read() == "print(1)\n"
    status, headers, body = http(f"{hub.url}/kernels/acme/k/resolve/refs%2Fheads%2Fv1/build/a/x.py", "HEAD",
                                 token=None)
    assert status == 200 and headers["X-Repo-Commit"] == refs["v1"] and headers["Content-Length"] == "9"
    assert headers["ETag"].strip('"') == api.list_repo_tree(repo, revision="v1", path_in_repo="build/a",
                                                            repo_type="kernel").__next__().blob_id


def test_overview_whoami_and_existing_repo(hub, api, repo):
    assert json.loads(http(f"{hub.url}/api/organizations/acme/overview")[2])["trustedKernelPublisher"] is True
    assert json.loads(http(f"{hub.url}/api/organizations/evil/overview")[2])["trustedKernelPublisher"] is False
    assert api.whoami()["name"] == "alice"
    api.create_repo(repo, repo_type="kernel", exist_ok=True)  # exist_ok: the 409 is absorbed by the client
    with pytest.raises(HfHubHTTPError) as e:
        api.create_repo(repo, repo_type="kernel")
    assert e.value.response.status_code == 409
    with pytest.raises(HfHubHTTPError):
        api.create_branch(repo, branch="v1", repo_type="kernel")
    api.create_branch(repo, branch="v1", repo_type="kernel", exist_ok=True)
    api.delete_branch(repo, branch="v1", repo_type="kernel")
    assert [b.name for b in api.list_repo_refs(repo, repo_type="kernel").branches] == ["main"]


def test_writes_need_a_valid_token(hub, repo):
    for token, status in ((None, 401), ("wrong", 403)):
        with pytest.raises(HfHubHTTPError) as e:
            HfApi(endpoint=hub.url, token=token or False).create_repo("acme/other", repo_type="kernel")
        assert e.value.response.status_code == status
        s, _, _ = http(f"{hub.url}/api/kernels/acme/k/commit/v1", "POST", ndjson(HEADER, add("a")), token=token)
        assert s == status
    assert HfApi(endpoint=hub.url, token=False).list_repo_files(repo, repo_type="kernel") == []  # reads are open


def test_read_token_mode(tmp_path):
    (tmp_path / "t").write_text(TOKEN + " alice acme\n")
    srv = serve(tmp_path / "root", token_file=tmp_path / "t", require_read_token=True)
    try:
        HfApi(endpoint=srv.url, token=TOKEN).create_repo("acme/k", repo_type="kernel", private=True)
        assert http(f"{srv.url}/api/kernels/acme/k/refs", token=None)[0] == 401
        assert http(f"{srv.url}/api/kernels/acme/k/refs", token="nope")[0] == 401
        assert http(f"{srv.url}/api/kernels/acme/k/refs")[0] == 200
    finally:
        srv.shutdown()


@pytest.mark.parametrize("bad", ["../x", "build/../../x", "/etc/passwd", "a\\b", "a\x00b", "a//b", ".git/config",
                                 "./a", ""])
def test_path_traversal_rejected(hub, api, repo, bad):
    before = head(api)
    s, _, body = http(f"{hub.url}/api/kernels/acme/k/commit/v1", "POST", ndjson(HEADER, add("ok.txt"), add(bad)))
    assert s == 400, body
    s, _, _ = http(f"{hub.url}/api/kernels/acme/k/preupload/v1", "POST",
                   json.dumps({"files": [{"path": bad, "size": 1, "sample": ""}]}).encode(), ctype="application/json")
    assert s == 400
    assert head(api) == before and api.list_repo_files(repo, revision="v1", repo_type="kernel") == []
    assert http(f"{hub.url}/kernels/acme/k/resolve/v1/build/%2E%2E/%2E%2E/hub.json")[0] == 400
    assert http(f"{hub.url}/api/kernels/%2E%2E/k/refs")[0] in (400, 404)


@pytest.mark.parametrize("payload", [b"not json\n", ndjson(add("a")), ndjson(HEADER, {"key": "weird", "value": {}}),
                                     ndjson(HEADER, {"key": "file", "value": {"path": "a", "content": "!!!"}}),
                                     ndjson(HEADER, {"key": "file", "value": "a"}), b""])
def test_malformed_commit_rejected(hub, api, repo, payload):
    before = head(api)
    assert http(f"{hub.url}/api/kernels/acme/k/commit/v1", "POST", payload)[0] == 400
    assert head(api) == before


def test_create_pr_and_stale_parent_are_refused(api, repo):
    with pytest.raises(HfHubHTTPError) as e:
        api.create_commit(repo, [CommitOperationAdd("a", b"a")], commit_message="m", revision="v1",
                          repo_type="kernel", create_pr=True)
    assert e.value.response.status_code == 400 and "pull requests" in str(e.value)
    stale = head(api)
    api.create_commit(repo, [CommitOperationAdd("a", b"a")], commit_message="m", revision="v1", repo_type="kernel")
    with pytest.raises(HfHubHTTPError) as e:
        api.create_commit(repo, [CommitOperationAdd("b", b"b")], commit_message="m", revision="v1",
                          repo_type="kernel", parent_commit=stale)
    assert e.value.response.status_code == 412
    assert api.list_repo_files(repo, revision="v1", repo_type="kernel") == ["a"]


def test_concurrent_commits_all_land(hub, api, repo):
    n = 8
    errors = []

    def one(i):
        try:
            HfApi(endpoint=hub.url, token=TOKEN).create_commit(
                repo, [CommitOperationAdd(f"build/v{i}/f.txt", str(i).encode())], commit_message=f"c{i}",
                revision="v1", repo_type="kernel")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert api.list_repo_files(repo, revision="v1", repo_type="kernel") == sorted(f"build/v{i}/f.txt"
                                                                                  for i in range(n))
    count = subprocess.run(["git", "--git-dir", str(hub.root / "acme" / "k.git"), "rev-list", "--count", "v1"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert count == str(n + 1)


def test_client_disconnect_mid_upload_changes_nothing(hub, api, repo):
    before = head(api)
    body = ndjson(HEADER, add("build/a/big.bin", b"z" * 100_000))
    host, port = hub.url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall((f"POST /api/kernels/acme/k/commit/v1 HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}"
                   f"\r\nContent-Type: application/x-ndjson\r\nContent-Length: {len(body)}\r\n\r\n").encode())
        s.sendall(body[: len(body) // 2])
    import time

    time.sleep(0.5)
    assert head(api) == before
    api.create_commit(repo, [CommitOperationAdd("after", b"1")], commit_message="m", revision="v1",
                      repo_type="kernel")
    assert api.list_repo_files(repo, revision="v1", repo_type="kernel") == ["after"]
    fsck = subprocess.run(["git", "--git-dir", str(hub.root / "acme" / "k.git"), "fsck", "--connectivity-only"],
                          capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr


def test_tree_listing_paginates(hub, api, repo):
    ops = [CommitOperationAdd(f"build/x/f{i:04d}", b"") for i in range(1100)]
    api.create_commit(repo, ops, commit_message="many", revision="v1", repo_type="kernel")
    s, headers, body = http(f"{hub.url}/api/kernels/acme/k/tree/v1/build/x")
    assert len(json.loads(body)) == 1000 and 'rel="next"' in headers["Link"]
    files = [e.path for e in api.list_repo_tree(repo, path_in_repo="build/x", revision="v1", repo_type="kernel")]
    assert files == [f"build/x/f{i:04d}" for i in range(1100)]


def test_private_repo_is_hidden_without_token(hub, api):
    api.create_repo("acme/secret", repo_type="kernel", private=True)
    assert http(f"{hub.url}/api/kernels/acme/secret/refs", token=None)[0] == 404
    assert http(f"{hub.url}/api/kernels/acme/secret/refs")[0] == 200


def test_model_style_resolve_path(hub, api, repo):
    api.create_commit(repo, [CommitOperationAdd("f.txt", b"hello")], commit_message="m", revision="v1",
                      repo_type="kernel")
    s, headers, body = http(f"{hub.url}/acme/k/resolve/v1/f.txt", token=None)
    assert s == 200 and body == b"hello" and headers["X-Repo-Commit"] == head(api)
    assert http(f"{hub.url}/kernels/acme/k/resolve/v1/missing.txt", token=None)[1]["X-Error-Code"] == "EntryNotFound"
    assert http(f"{hub.url}/kernels/acme/k/resolve/nope/f.txt", token=None)[1]["X-Error-Code"] == "RevisionNotFound"


def test_serve_command_line(tmp_path):
    """`kernel-builder serve ROOT --port 0 ...` prints its URL and serves until stopped."""
    import sys

    (tmp_path / "tokens").write_text(TOKEN + " alice acme\n")
    proc = subprocess.Popen([sys.executable, "-m", "kernel_builder", "serve", str(tmp_path / "root"), "--port", "0",
                             "--token-file", str(tmp_path / "tokens"), "--trusted-org", "acme"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = line.split(" at ")[1].split()[0]
        assert json.loads(http(f"{url}/api/organizations/acme/overview")[2])["trustedKernelPublisher"] is True
        HfApi(endpoint=url, token=TOKEN).create_repo("acme/k", repo_type="kernel")
        assert (tmp_path / "root" / "acme" / "k.git" / "HEAD").is_file()
    finally:
        proc.terminate()  # SIGTERM, as a service manager stops it: graceful, exit 0
        out, err = proc.communicate(timeout=40)
    assert proc.returncode == 0 and out.splitlines()[-1] == "stopped", (proc.returncode, out, err)
    assert "Traceback" not in err
