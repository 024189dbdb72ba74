"""The one place that turns huggingface_hub/httpx exceptions into the hub errors of errors.py.

Why a translator: huggingface_hub raises multi-line HTTP errors with URLs and hints meant for huggingface.co;
the CLI prints one line and exits with one code, and a token must never appear in what we print.
"""

from __future__ import annotations

import contextlib

from ..errors import HubAuthError, HubError, HubNetworkError, HubRepoNotFound, clip


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


@contextlib.contextmanager
def translate(endpoint: str, repo_id: str, action: str):
    """Re-raise what huggingface_hub throws while doing `action` as a one-line HubError subclass."""
    try:  # huggingface_hub 2.x ships its transport as httpx2; 1.x used httpx
        import httpx2 as httpx
    except ImportError:  # pragma: no cover
        import httpx
    from huggingface_hub.errors import (HfHubHTTPError, HfUriError, HFValidationError, LocalEntryNotFoundError,
                                        OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError)

    where = f"{endpoint} {clip(repo_id, 200)}"
    try:
        yield
    except RepositoryNotFoundError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403) and "RepoNotFound" not in str(getattr(e.response, "headers", {}).get("X-Error-Code")):
            raise HubAuthError(f"{where}: {action}: {status}: authentication failed; set HF_TOKEN to a token with "
                               "write access (or run `hf auth login`)") from None
        raise HubRepoNotFound(f"{where}: {action}: repository not found (or not visible with this token)") from None
    except RevisionNotFoundError as e:
        raise HubRepoNotFound(f"{where}: {action}: {_first_line(e)}") from None
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            raise HubAuthError(f"{where}: {action}: {status}: {'no valid token' if status == 401 else 'forbidden'}; "
                               "set HF_TOKEN to a token with write access (or run `hf auth login`)") from None
        server = getattr(getattr(e, "response", None), "headers", {}).get("X-Error-Message")
        raise HubError(f"{where}: {action}: HTTP {status}: {server or _first_line(e)}") from None
    except (httpx.TransportError, ConnectionError, OfflineModeIsEnabled) as e:
        raise HubNetworkError(f"{where}: {action}: cannot reach the hub: {_first_line(e) or type(e).__name__}") from None
    except LocalEntryNotFoundError as e:  # a download that could not reach the hub and found no cached copy
        raise HubNetworkError(f"{where}: {action}: cannot reach the hub (and nothing cached): "
                              f"{clip(_first_line(e).removeprefix('Got: '))}") from None
    except (HfUriError, HFValidationError) as e:  # the client refused a URL or id: still the hub verb failing
        raise HubError(f"{where}: {action}: {clip(_first_line(e))}") from None
