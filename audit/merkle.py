"""Merkle tree hashing of RFC 6962 / RFC 9162 (Certificate Transparency): leaf
``SHA-256(0x00 ‖ d)``, node ``SHA-256(0x01 ‖ left ‖ right)``; the tree over n leaves splits at
the largest power of two below n. The leaves are the events' entry hashes, in sequence order."""

from __future__ import annotations

import hashlib

EMPTY_ROOT = hashlib.sha256(b"").hexdigest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class Accumulator:
    """Adds leaves one at a time in constant memory per level, and gives the root of the tree
    over the leaves so far at any moment: the perfect subtrees of the size's binary
    decomposition, folded from the right."""

    def __init__(self) -> None:
        self.size = 0
        self._subtrees: list[tuple[int, bytes]] = []  # (height, hash), largest first

    @classmethod
    def resume(cls, size: int, frontier: list[list]) -> Accumulator:
        """Continue from a saved ``frontier`` (the (height, hex) pairs) at ``size`` leaves."""
        accumulator = cls()
        accumulator.size = size
        accumulator._subtrees = [(height, bytes.fromhex(digest)) for height, digest in frontier]
        return accumulator

    def frontier(self) -> list[list]:
        return [[height, digest.hex()] for height, digest in self._subtrees]

    def add(self, data: bytes) -> None:
        height, digest = 0, leaf_hash(data)
        while self._subtrees and self._subtrees[-1][0] == height:
            _, left = self._subtrees.pop()
            height, digest = height + 1, node_hash(left, digest)
        self._subtrees.append((height, digest))
        self.size += 1

    def root(self) -> str:
        if not self._subtrees:
            return EMPTY_ROOT
        digest = self._subtrees[-1][1]
        for _, left in reversed(self._subtrees[:-1]):
            digest = node_hash(left, digest)
        return digest.hex()


def root(leaves: list[bytes]) -> str:
    """The RFC's recursive definition, for tests and small trees."""
    if not leaves:
        return EMPTY_ROOT
    return _mth(leaves).hex()


def _mth(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(_mth(leaves[:k]), _mth(leaves[k:]))
