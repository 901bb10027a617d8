"""Resolve ``${env:NAME}`` in storage options, and keep secrets out of what daskprs writes.

Configs, ``job_result.json`` and the fingerprint keep the unresolved form; everything
written under ``logs/`` and to the terminal passes :func:`redact`, which replaces known
secret values and SAS query values (``sig=``, ``se=``, ``sv=``) with ``***``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from typing import Any

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
