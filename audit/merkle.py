"""Merkle tree hashing of RFC 6962 / RFC 9162 (Certificate Transparency): leaf
``SHA-256(0x00 ‖ d)``, node ``SHA-256(0x01 ‖ left ‖ right)``; the tree over n leaves splits at
the largest power of two below n. The leaves are the events' entry hashes, in sequence order."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Sequence
from itertools import islice

EMPTY_ROOT = hashlib.sha256(b"").hexdigest()
BLOCK_HEIGHT = 14


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _fold(subtrees: Sequence[bytes]) -> str:
    """The root over perfect subtrees given largest first: folded from the right."""
    if not subtrees:
        return EMPTY_ROOT
    digest = subtrees[-1]
    for left in reversed(subtrees[:-1]):
        digest = node_hash(left, digest)
    return digest.hex()


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
        self.add_subtree(0, leaf_hash(data))

    def add_subtree(self, height: int, digest: bytes) -> None:
        """Add 2**height leaves at once by the root of their perfect subtree. The size so far must
        be a multiple of 2**height, so that the subtree is one of the tree's own."""
        if self.size % (1 << height):
            raise ValueError(f"a subtree of height {height} cannot start at leaf {self.size}")
        self.size += 1 << height
        while self._subtrees and self._subtrees[-1][0] == height:
            _, left = self._subtrees.pop()
            height, digest = height + 1, node_hash(left, digest)
        self._subtrees.append((height, digest))

    def root(self, then: Sequence[bytes] = ()) -> str:
        """The root over the leaves so far, or over them and the leaves after them that ``then``
        covers: perfect subtrees, largest first, not added (a checkpoint inside a block)."""
        return _fold([digest for _, digest in self._subtrees] + list(then))


def roots(leaves: Iterable[bytes], sizes: Iterable[int], *, block_height: int = BLOCK_HEIGHT) -> dict[int, str]:
    """The root over the first ``size`` leaves, for every size in ``sizes`` that the leaves reach,
    reading them once and stopping after the largest.

    Equal to ``root(leaves[:size])``, but fast in pure Python: leaves are taken in aligned blocks of
    2**block_height and hashed level by level with list comprehensions (one hashlib call per node,
    no per-leaf bookkeeping). A full block joins an Accumulator as one perfect subtree; a size that
    ends inside a block is the Accumulator's subtrees followed by the perfect subtrees of the
    block's first leaves, which the block's levels already hold."""
    wanted = deque(sorted({size for size in sizes if size > 0}))
    found: dict[int, str] = {}
    tree, stream, block_size = Accumulator(), iter(leaves), 1 << block_height
    while wanted:
        block = list(islice(stream, min(block_size, wanted[-1] - tree.size)))
        if not block:
            break
        levels = _levels(block)
        while wanted and wanted[0] <= tree.size + len(block):
            size = wanted.popleft()
            found[size] = tree.root(then=_prefix(levels, size - tree.size))
        if len(block) == block_size:
            tree.add_subtree(block_height, levels[-1][0])
    return found


def _levels(block: list[bytes]) -> list[list[bytes]]:
    """The block's leaf hashes, then each level of complete pairs above them."""
    sha256 = hashlib.sha256
    level = [sha256(b"\x00" + data).digest() for data in block]
    levels = [level]
    while len(level) > 1:  # an unpaired last node (a partial block) is not needed higher up
        level = [sha256(b"\x01" + left + right).digest() for left, right in zip(level[::2], level[1::2], strict=False)]
        levels.append(level)
    return levels


def _prefix(levels: list[list[bytes]], count: int) -> list[bytes]:
    """The perfect subtrees over a block's first ``count`` leaves, largest first: one per bit of
    ``count``, each starting where the larger ones end."""
    subtrees, start = [], 0
    for height in reversed(range(count.bit_length())):
        if count >> height & 1:
            subtrees.append(levels[height][start >> height])
            start += 1 << height
    return subtrees


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
