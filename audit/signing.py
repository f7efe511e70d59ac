"""Ed25519 keys for checkpoints (and, later, export manifests). The private key comes from
AUDIT_SIGNING_KEY or AUDIT_SIGNING_KEY_FILE: 32 raw bytes, hex encoded (manage.py
audit_keygen makes a pair). Verification needs only the public key."""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def generate() -> tuple[str, str]:
    """A new key pair, as (private hex, public hex)."""
    key = Ed25519PrivateKey.generate()
    return key.private_bytes_raw().hex(), public_hex(key)


def public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def key_id(public: str) -> str:
    return hashlib.sha256(bytes.fromhex(public)).hexdigest()


def signing_key() -> Ed25519PrivateKey:
    value = settings.AUDIT_SIGNING_KEY
    if not value:
        raise ImproperlyConfigured("AUDIT_SIGNING_KEY is not set: make a key pair with manage.py audit_keygen.")
    try:
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(value))
    except ValueError:
        raise ImproperlyConfigured("AUDIT_SIGNING_KEY: expected 64 hex characters (an Ed25519 private key).") from None


def sign(body: str) -> tuple[str, str]:
    """(signature hex, key id) for ``body``."""
    key = signing_key()
    return key.sign(body.encode()).hex(), key_id(public_hex(key))


def verify(public: str, body: str, signature: str) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public)).verify(bytes.fromhex(signature), body.encode())
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_keys() -> dict[str, str]:
    """key id → public key, for checking signatures: AUDIT_VERIFY_KEYS (every key that has signed,
    after a rotation), or else the signing key's own public half."""
    keys = list(settings.AUDIT_VERIFY_KEYS)
    if not keys and settings.AUDIT_SIGNING_KEY:
        keys = [public_hex(signing_key())]
    return {key_id(key): key for key in keys}
