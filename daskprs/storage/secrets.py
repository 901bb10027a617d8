"""Resolve ``${env:NAME}`` in storage options, and keep secrets out of what daskprs writes.

Configs, ``job_result.json`` and the fingerprint keep the unresolved form; everything
written under ``logs/`` and to the terminal passes :func:`redact`, which replaces known
secret values and SAS query values (``sig=``, ``se=``, ``sv=``) with ``***``: daskprs' own
logs through :class:`RedactingFilter`, user code's output (``logs/user/``) through
:class:`RedactingStream` (the runner's stdout and stderr) and the filter.
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
from collections.abc import Iterable
from typing import Any, TextIO

from daskprs.errors import ConfigError, Problem

_ENV = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
_SAS = re.compile(r"(?i)\b(sig|se|sv)=([^&\s\"']+)")
SECRET_KEYS = ("key", "secret", "password", "token", "sas_token", "account_key",
               "connection_string", "credential", "client_secret", "session_token",
               "aws_secret_access_key", "aws_session_token")
SECRET_ENVIRONMENT = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID",
                      "AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY",
                      "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_SAS_TOKEN",
                      "AZURE_CLIENT_SECRET")
_MIN_SECRET = 4
_secrets: set[str] = set()


def resolve_options(options: dict[str, Any], where: str) -> dict[str, Any]:
    """Replace ``${env:NAME}`` in string values (nested too); remember secret values.

    Raises
    ------
    ConfigError
        When a named environment variable is not set.
    """
    problems: list[Problem] = []

    def resolve(key: str, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: resolve(str(k), v) for k, v in value.items()}
        if not isinstance(value, str):
            return value

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                problems.append(Problem(f"{where}.{key}", "storage_options",
                                        f"names environment variable {name} which is not set",
                                        value, f"Set it: export {name}=..."))
                return ""
            remember(os.environ[name])
            return os.environ[name]

        resolved = _ENV.sub(substitute, value)
        if key.lower() in SECRET_KEYS or "key" in key.lower() or "secret" in key.lower():
            remember(resolved)
        return resolved

    result = {key: resolve(str(key), value) for key, value in options.items()}
    if problems:
        raise ConfigError(problems)
    return result


def remember(*values: str) -> None:
    """Add values to the set that :func:`redact` removes."""
    for value in values:
        if isinstance(value, str) and len(value) >= _MIN_SECRET:
            _secrets.add(value)
            for part in value.split(";"):  # connection strings: AccountKey=...;...
                if "=" in part:
                    name, _, secret = part.partition("=")
                    if name.strip().lower() in ("accountkey", "sharedaccesssignature"):
                        remember(secret)


def remember_environment() -> None:
    """Treat the standard cloud credential variables of this process as secrets."""
    remember(*(os.environ[name] for name in SECRET_ENVIRONMENT if name in os.environ))


def known_secrets() -> list[str]:
    """The secret values, longest first (for workers, which redact their own logs)."""
    return sorted(_secrets, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """Replace secret values and SAS query values with ``***``."""
    for secret in secrets if secrets is not None else known_secrets():
        text = text.replace(secret, "***")
    return _SAS.sub(lambda m: f"{m.group(1)}=***", text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's message (and its traceback)."""

    def __init__(self, secrets: Iterable[str] | None = None) -> None:
        super().__init__()
        self.secrets = list(secrets) if secrets is not None else None

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops it."""
        message = record.getMessage()
        if record.exc_info:
            formatter = logging.Formatter()
            message = f"{message}\n{formatter.formatException(record.exc_info)}"
            record.exc_info = None
            record.exc_text = None
        record.msg = redact(message, self.secrets)
        record.args = ()
        return True


class RedactingStream(io.TextIOBase):
    """A text stream that redacts what is written to it, a whole line at a time, and
    passes it on to ``stream`` (a secret split over several ``write`` calls, as ``print``
    makes, is still found).

    Parameters
    ----------
    stream
        Where the redacted text goes.
    secrets
        Values to redact; None for the values :func:`remember` collected.
    """

    _MAX_PENDING = 1 << 20  # a longer line without its end is passed on in pieces

    def __init__(self, stream: TextIO, secrets: Iterable[str] | None = None) -> None:
        super().__init__()
        self.stream = stream
        self.secrets = list(secrets) if secrets is not None else None
        self._pending: list[str] = []
        self._size = 0
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        """Keep ``text`` until its line ends; pass whole lines on, redacted."""
        with self._lock:
            head, newline, tail = text.rpartition("\n")
            if newline:
                self.stream.write(redact("".join([*self._pending, head, newline]),
                                         self.secrets))
                self._pending, self._size = [], 0
                text = tail
            if text:
                self._pending.append(text)
                self._size += len(text)
            if self._size > self._MAX_PENDING:
                self._pass_pending()
        return len(head) + len(newline) + len(tail)

    def flush(self) -> None:
        """Pass on what is kept (also a line without its end), then flush ``stream``."""
        with self._lock:
            self._pass_pending()
        self.stream.flush()

    def _pass_pending(self) -> None:
        if self._pending:
            self.stream.write(redact("".join(self._pending), self.secrets))
            self._pending, self._size = [], 0

    def writable(self) -> bool:
        """Always True."""
        return True

    def fileno(self) -> int:
        """The descriptor of ``stream`` (what is written there directly is not redacted)."""
        return self.stream.fileno()

    def isatty(self) -> bool:
        """Whether ``stream`` is a terminal."""
        return self.stream.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        """The encoding of ``stream``."""
        return self.stream.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        """The error handler of ``stream``."""
        return self.stream.errors
