import pytest

from audit import signing


@pytest.fixture
def signing_key(settings, tmp_path):
    """A fresh Ed25519 key pair for checkpoints and exports; returns the public half."""
    settings.AUDIT_SIGNING_KEY, public = signing.generate()
    settings.AUDIT_VERIFY_KEYS = [public]
    settings.AUDIT_WITNESS_DIR = str(tmp_path / "witness")
    return public
