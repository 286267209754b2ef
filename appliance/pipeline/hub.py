"""The Hugging Face Hub seen from the worker: one probe that tells not-found, no access and
unreachable apart, and a test for "this failure was the network"."""

from __future__ import annotations

from appliance.errors import AppError, NotFound, UpstreamUnavailable


class AccessDenied(AppError):
    code = "ACCESS_DENIED"
    status_code = 403


_NETWORK_MODULES = ("httpx", "httpcore", "requests", "urllib3", "aiohttp", "fsspec.implementations.http")


def is_network_error(exc: BaseException) -> bool:
    """True if the exception, or one it came from, is a lost or refused connection or a timeout."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, (ConnectionError, TimeoutError)) or type(seen).__module__.startswith(_NETWORK_MODULES):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def probe(kind: str, repo_id: str, token: str | None, revision: str | None = None) -> object:
    """The repo's info (files with sizes for models), or the reason it cannot be had."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        if kind == "model":
            return HfApi().model_info(repo_id, revision=revision, token=token, timeout=20, files_metadata=True)
        return HfApi().dataset_info(repo_id, token=token, timeout=20)
    except RevisionNotFoundError:
        raise NotFound(f"{repo_id} has no revision {revision!r}") from None
    except GatedRepoError:
        raise AccessDenied(
            f"{repo_id} is gated: give an access token (hf_...) of an account that accepted its terms"
        ) from None
    except RepositoryNotFoundError:
        if token:
            raise NotFound(f"No {kind} {repo_id} on the Hub, or this token cannot see it") from None
        raise NotFound(f"No {kind} {repo_id} on the Hub (if it is private, give an access token)") from None
    except Exception as exc:  # noqa: BLE001 - connection errors come from several HTTP libraries
        raise UpstreamUnavailable(
            f"The Hugging Face Hub is unreachable ({type(exc).__name__}): check the "
            "network, or import the data from a file instead"
        ) from None
