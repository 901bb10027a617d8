"""Scheduler addresses: ``tcp://host:port``, and ``host:port`` read as ``tcp://host:port``.

A string that is neither is refused here, so that a mistyped address is a configuration
error instead of a job that quietly runs on an embedded LocalCluster.
"""

from __future__ import annotations

import re

# the comm schemes distributed registers (``distributed.comm.registry.backends``)
SCHEMES = ("tcp", "tls", "ws", "wss", "ucx", "ucxx", "inproc")
EXAMPLE = "tcp://127.0.0.1:8786"
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::([^:]*))?$")


class AddressError(ValueError):
    """A string that is not a scheduler address.

    Parameters
    ----------
    reason
        What is wrong (``"has a port that is not a number"``).
    suggestion
        The address the user probably meant, or None.
    """

    def __init__(self, reason: str, suggestion: str | None = None) -> None:
        self.reason = reason
        self.suggestion = suggestion
        super().__init__(reason)


def looks_like_address(text: str) -> bool:
    """Whether ``text`` is meant as an address (it has ``://`` or ``:port``), as opposed
    to a bare name such as an Azure compute target."""
    return "://" in text or ":" in text


def scheduler_address(text: str) -> str:
    """Return ``text`` as a scheduler address with its scheme.

    ``host:port`` becomes ``tcp://host:port``; ``scheme://host:port`` is kept.

    Raises
    ------
    AddressError
        When the scheme is unknown, the host is missing or the port is not 1-65535.
    """
    value = text.strip()
    scheme, has_scheme, rest = value.partition("://")
    if not has_scheme:
        scheme, rest = "tcp", value
    elif scheme not in SCHEMES:
        raise AddressError(f"has the scheme {scheme!r}, which is not a Dask comm "
                           f"({', '.join(SCHEMES)})", f"tcp://{rest}" if rest else None)
    if scheme == "inproc":
        return value
    rest = rest.rstrip("/")
    match = _HOST_PORT.match(rest)
    if match is None:
        raise AddressError("is not host:port")
    host, port = match.groups()
    if port is None:
        raise AddressError("has no port", f"{scheme}://{host}:8786")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise AddressError(f"has the port {port!r}, which is not a number from 1 to 65535")
    return f"{scheme}://{host}:{int(port)}"


def address_fix(error: AddressError, how: str) -> str:
    """The fix for a refused address: what was meant, else an example; ``how`` spells
    where the address goes (``"--scheduler {}"``, ``"compute_target={!r}"``)."""
    if error.suggestion is not None:
        return f"Did you mean {how.format(error.suggestion)}?"
    return f"Use {how.format(EXAMPLE)} (host:port is read as tcp://host:port)"
