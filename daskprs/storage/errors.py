"""Translate storage errors (s3fs, adlfs, botocore, azure-core, aiohttp) once, at the
boundary, into daskprs errors whose message names the URL and the fix.

The table matches on the exception chain's type names and messages, so the optional
backends need not be importable here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from daskprs.errors import DaskprsError, InputError, OutputError
from daskprs.storage.secrets import redact

# (what is matched in "Type: message" of any exception in the chain, what it means, fix)
_TABLE: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("NoSuchBucket", "bucket does not exist"), "the bucket does not exist",
     "Create it (aws s3 mb s3://BUCKET) or fix the bucket name in the URL"),
    (("ContainerNotFound", "container does not exist"), "the container does not exist",
     "Create it (az storage container create -n CONTAINER) or fix the container name"),
    (("InvalidAccessKeyId", "SignatureDoesNotMatch", "failed to authenticate",
      "AuthenticationFailed", "InvalidClientTokenId", "ExpiredToken"),
     "the credentials were refused",
     "Check key/secret (S3) or the account key, connection string or SAS token (Azure) in "
     "storage_options or the environment"),
    (("AccessDenied", "AuthorizationPermissionMismatch", "AuthorizationFailure", "403",
      "PermissionError"),
     "access is denied", "Grant the credentials read (inputs) and write (output) access"),
    (("EndpointConnectionError", "ServiceRequestError", "ClientConnectorError",
      "ConnectionRefusedError", "ConnectTimeout", "Could not connect"),
     "the storage endpoint cannot be reached",
     "Check endpoint_url (S3) or the BlobEndpoint of the connection string (Azure), and that "
     "the server is running"),
)


def describe(exc: BaseException) -> tuple[str, str] | None:
    """``(what, fix)`` for a known storage error anywhere in the chain, else None."""
    chain = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    text = " | ".join(chain)
    for needles, what, fix in _TABLE:
        if any(needle in text for needle in needles):
            return what, fix
    return None


@contextlib.contextmanager
def translate_storage_errors(url: str, error: type[DaskprsError] = OutputError,
                             role: str = "output") -> Iterator[None]:
    """Raise ``error`` naming ``url`` and the fix for a storage failure in the block."""
    try:
        yield
    except DaskprsError:
        raise
    except ImportError as exc:  # fsspec names the package a protocol needs
        extra = " (pip install 'daskprs[azure]')" if "adlfs" in str(exc) else ""
        raise error(f"{role} {redact(url)}: {exc}{extra}.") from exc
    except Exception as exc:
        known = describe(exc)
        if known is None:
            raise
        what, fix = known
        first = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise error(f"{role} {redact(url)}: {what} ({type(exc).__name__}: {first}). "
                    f"{fix}.") from exc


def input_errors(url: str) -> contextlib.AbstractContextManager[None]:
    """:func:`translate_storage_errors` for an input."""
    return translate_storage_errors(url, InputError, "input")
