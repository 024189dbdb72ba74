"""`serve`'s rights, audit and history: per-org tokens, every ref change logged and undoable, and every malformed
request a specific 4xx. The real huggingface_hub client where a client would send the request, raw HTTP where
it never would."""

from __future__ import annotations

import json
import os
import subprocess
import time

os.environ.pop("HF_HUB_DISABLE_TELEMETRY", None)  # breaks every huggingface_hub 2.4 call (CONTRACT §7)

import pytest  # noqa: E402
from huggingface_hub import CommitOperationAdd, HfApi  # noqa: E402
from huggingface_hub.errors import HfHubHTTPError  # noqa: E402

from kernel_builder.hub.serve import serve  # noqa: E402
from test_serve import HEADER, add, http, ndjson  # noqa: E402

A, B = "tok-a", "tok-b"
HEADER_LINE = ndjson(HEADER)


@pytest.fixture
def hub(tmp_path):
    (tmp_path / "tokens").write_text(f"{A} user-a acme\n{B} user-b\n")
    srv = serve(tmp_path / "root", token_file=tmp_path / "tokens", trusted_orgs=["acme"])
    srv.root = tmp_path / "root"
    yield srv
    srv.shutdown()


def status_of(call) -> int:
    with pytest.raises(HfHubHTTPError) as e:
        call()
    return e.value.response.status_code


def git(hub, repo, *args) -> str:
    return subprocess.run(["git", "--git-dir", str(hub.root / repo), *args], capture_output=True, text=True,
                          check=True).stdout


def test_user_b_cannot_write_delete_or_read_private_in_acme_user_a_can(hub):
    a, b = HfApi(endpoint=hub.url, token=A), HfApi(endpoint=hub.url, token=B)
    assert status_of(lambda: b.create_repo("acme/act", repo_type="kernel")) == 403
    a.create_repo("acme/act", repo_type="kernel")
    a.create_branch("acme/act", branch="v1", repo_type="kernel")
    a.create_commit("acme/act", [CommitOperationAdd("build/x.py", b"good = 1\n")], commit_message="v1",
                    revision="v1", repo_type="kernel")
    good = a.kernel_info("acme/act", revision="v1").sha
    assert status_of(lambda: b.create_commit("acme/act", [CommitOperationAdd("build/x.py", b"evil\n")],
                                             commit_message="evil", revision="v1", repo_type="kernel")) == 403
    assert status_of(lambda: b.delete_branch("acme/act", branch="v1", repo_type="kernel")) == 403
    assert status_of(lambda: b.create_branch("acme/act", branch="v2", repo_type="kernel")) == 403
    assert a.kernel_info("acme/act", revision="v1").sha == good
    a.create_repo("acme/secret", repo_type="kernel", private=True)
    assert status_of(lambda: b.list_repo_refs("acme/secret", repo_type="kernel")) == 404  # not disclosed
    assert [r.name for r in a.list_repo_refs("acme/secret", repo_type="kernel").branches] == ["main"]
    b.create_repo("user-b/own", repo_type="kernel", private=True)  # its own namespace
    assert status_of(lambda: a.list_repo_refs("user-b/own", repo_type="kernel")) == 404
    assert b.whoami()["name"] == "user-b" and [o["name"] for o in a.whoami()["orgs"]] == ["acme"]
    a.delete_branch("acme/act", branch="v1", repo_type="kernel")
    assert [r.name for r in a.list_repo_refs("acme/act", repo_type="kernel").branches] == ["main"]


def test_every_ref_change_is_audited_and_old_commits_stay_reachable(hub):
    a = HfApi(endpoint=hub.url, token=A)
    a.create_repo("acme/k", repo_type="kernel")
    a.create_branch("acme/k", branch="v1", repo_type="kernel")
    first = a.create_commit("acme/k", [CommitOperationAdd("f", b"1")], commit_message="one", revision="v1",
                            repo_type="kernel").oid
    second = a.create_commit("acme/k", [CommitOperationAdd("f", b"2")], commit_message="two", revision="v1",
                             repo_type="kernel").oid
    a.delete_branch("acme/k", branch="v1", repo_type="kernel")
    log = [json.loads(line) for line in (hub.root / "audit.log").read_text().splitlines()]
    v1 = [(e["action"], e["old"], e["new"]) for e in log if e["ref"] == "refs/heads/v1"]
    assert [x[0] for x in v1] == ["create", "update", "update", "delete"]
    assert v1[2][1:] == (first, second) and v1[3][1:] == (second, None)
    assert {e["user"] for e in log} == {"user-a"} and all(e["repo"] == "acme/k" and e["time"] for e in log)
    history = git(hub, "acme/k.git", "for-each-ref", "--format=%(refname) %(objectname)", "refs/kb-history/")
    kept = {line.split()[1] for line in history.splitlines() if line.split()[0].endswith("/v1")}
    assert {first, second} <= kept  # the deleted branch's last commit included: undo is one update-ref
    assert git(hub, "acme/k.git", "cat-file", "-t", second).strip() == "commit"
    assert all(e["user"] == "user-a" for e in log)


@pytest.mark.parametrize("body,why", [
    ({"name": "x", "organization": "acme", "type": "kernel", "private": "false"}, "private"),
    ({"name": "x\n", "organization": "acme", "type": "kernel"}, "invalid repo id"),
    ({"name": "x", "organization": ["acme"], "type": "kernel"}, "invalid repo id"),
    ({"name": "x", "organization": "acme", "type": "kernel", "visibility": 3}, "visibility"),
    (["not", "an", "object"], "JSON object"),
    ({"name": 5}, "JSON object"),
])
def test_malformed_create_is_a_400_and_makes_nothing(hub, body, why):
    s, headers, raw = http(f"{hub.url}/api/repos/create", "POST", json.dumps(body).encode(), token=A,
                           ctype="application/json")
    assert s == 400 and why in headers["X-Error-Message"], raw
    assert not (hub.root / "acme").exists() or not list((hub.root / "acme").iterdir())


def test_malformed_requests_are_specific_4xx_never_500(hub):
    a = HfApi(endpoint=hub.url, token=A)
    a.create_repo("acme/k", repo_type="kernel")
    u = f"{hub.url}/api/kernels/acme/k"
    cases = [
        (f"{u}/branch/v2", "POST", b'["list"]', 400),
        (f"{u}/branch/v2", "POST", b'{"startingPoint": 5}', 400),
        (f"{u}/branch/v2", "POST", b'{"startingPoint": []}', 400),
        (f"{u}/branch/v2", "POST", b"{not json", 400),
        (f"{u}/preupload/main", "POST", b'{"files": [5]}', 400),
        (f"{u}/preupload/main", "POST", b"[" * 100_000, 400),
        (f"{u}/commit/main", "POST", HEADER_LINE + b"[" * 100_000 + b"\n", 400),
        (f"{u}/commit/main", "POST", ndjson(HEADER, {"key": "deletedFolder", "value": {"path": 5}}), 400),
        (f"{u}/commit/main", "POST", ndjson({"key": "header", "value": []}), 400),
        (f"{u}/commit/main", "POST", ndjson(HEADER, add(".GIT/config")), 400),
        (f"{u}/commit/main", "POST", ndjson(HEADER, add("a/.Git/hooks/x")), 400),
        (f"{u}/commit/main", "POST", ndjson(HEADER, add("git~1/config")), 400),
        (f"{u}/commit/main", "POST", ndjson(HEADER, add("a"), add("a/b")), 400),
        (f"{u}/commit/main", "POST", ndjson(HEADER, {"key": "file", "value": {"path": "a", "content": "QQ==QQ=="}}),
         400),
        (f"{u}/commit/main", "POST", b'{"key": "header", "value": {"summary": "\xff\xfe"}}\n', 400),
        (f"{u}/commit/main", "POST", ndjson({"key": "header", "value": {"parentCommit": 7}}), 400),
        (f"{u}/tree/main?cursor=-5", "GET", None, 400),
        (f"{u}/revision/%E2%98%83", "GET", None, 404),
        (f"{u}/revision/%0D%0Aevil", "GET", None, 404),
        (f"{u}/revision/%FF", "GET", None, 400),
        (f"{hub.url}/api/kernels/acme/k%0A/refs", "GET", None, 400),
        (f"{u}/branch/main", "PUT", b"{}", 405),
    ]
    for url, method, body, want in cases:
        t = time.monotonic()
        s, headers, raw = http(url, method, body, token=A, ctype="application/json")
        assert s == want, (url, method, body[:80] if body else None, s, raw[:300])
        assert time.monotonic() - t < 5 and headers["X-Error-Message"].isascii(), url
    assert [b.name for b in a.list_repo_refs("acme/k", repo_type="kernel").branches] == ["main"]
    assert a.list_repo_files("acme/k", repo_type="kernel") == []


def test_stale_ref_lock_is_recovered_and_a_live_one_is_a_409(hub):
    a = HfApi(endpoint=hub.url, token=A)
    a.create_repo("acme/k", repo_type="kernel")
    lock = hub.root / "acme" / "k.git" / "refs" / "heads" / "main.lock"
    lock.write_text("")  # as a writer killed inside update-ref leaves it
    s, headers, _ = http(f"{hub.url}/api/kernels/acme/k/commit/main", "POST", ndjson(HEADER, add("f")), token=A)
    assert s == 409 and "another writer" in headers["X-Error-Message"]
    old = time.time() - 3600
    os.utime(lock, (old, old))
    a.create_commit("acme/k", [CommitOperationAdd("f", b"1")], commit_message="m", revision="main",
                    repo_type="kernel")
    assert a.list_repo_files("acme/k", repo_type="kernel") == ["f"] and not lock.exists()


def test_old_token_formats_still_read_with_no_org_rights(tmp_path):
    (tmp_path / "t").write_text("bare-token\nold-token olduser\n")
    srv = serve(tmp_path / "root", token_file=tmp_path / "t")
    try:
        old = HfApi(endpoint=srv.url, token="old-token")
        old.create_repo("olduser/k", repo_type="kernel")
        assert status_of(lambda: old.create_repo("acme/k", repo_type="kernel")) == 403
        bare = HfApi(endpoint=srv.url, token="bare-token")
        assert bare.whoami()["name"] == "user"
        bare.create_repo("user/k", repo_type="kernel")
        assert any("no USER column" in n for n in srv.app.tokens.notes)
    finally:
        srv.shutdown()
