"""Encryption at rest for upstream credentials (Fernet: AES-128-CBC + HMAC-SHA256).

Keys come from settings.FIELD_ENCRYPTION_KEYS, a dedicated list rather than SECRET_KEY, so
rotating the session key cannot orphan credentials. The first key encrypts; every key
decrypts (MultiFernet), so a new key is rolled out by prepending it, running
`python manage.py rotate_encryption_keys`, then dropping the old one.
"""

import json
from functools import lru_cache

from cryptography.fernet import InvalidToken, MultiFernet
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


@lru_cache(maxsize=4)
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS holds a key that is not a Fernet key") from exc


def fernet() -> MultiFernet:
    return _fernet_for(tuple(settings.FIELD_ENCRYPTION_KEYS))


class EncryptedJSONField(models.TextField):
    """A JSON value stored as a Fernet token; decrypted only when the row is loaded."""

    def get_prep_value(self, value):
        if value is None:
            return None
        return fernet().encrypt(json.dumps(value, separators=(",", ":")).encode()).decode()

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        try:
            return json.loads(fernet().decrypt(value.encode()))
        except InvalidToken:
            # Never echo the ciphertext: say what to do instead.
            raise ImproperlyConfigured(
                "Stored credentials cannot be decrypted with FIELD_ENCRYPTION_KEYS "
                "(was a key removed before rotate_encryption_keys ran?)"
            ) from None

    def to_python(self, value):
        return value

    def value_to_string(self, obj):
        return "<encrypted>"


def rotate(token: str) -> str:
    """Re-encrypt one stored token with the first (newest) key."""
    return fernet().rotate(token.encode()).decode()
