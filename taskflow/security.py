"""Argument encryption at rest with Fernet; several keys allow rotation (MultiFernet)."""

from __future__ import annotations

from typing import Any

from taskflow.exceptions import ConfigurationError, missing_extra


def build_cipher(key: bytes | str | list[bytes | str]) -> Any:
    """A Fernet for one key, a MultiFernet for a list (first key encrypts, all decrypt)."""
    try:
        from cryptography.fernet import Fernet, MultiFernet
    except ImportError as exc:
        raise missing_extra("cryptography", "encryption", "encrypt_args_key") from exc
    keys = key if isinstance(key, list) else [key]
    if not keys:
        raise ConfigurationError("encrypt_args_key is an empty list: give at least one key")
    try:
        fernets = [Fernet(k) for k in keys]
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            "encrypt_args_key is not a valid Fernet key: generate one with python -c "
            '"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
        ) from exc
    return fernets[0] if len(fernets) == 1 else MultiFernet(fernets)
