"""The fast Merkle roots (blocks hashed level by level, whole blocks added to the Accumulator as
perfect subtrees) equal the RFC's recursive definition at every size and block boundary."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from audit import merkle


def leaves(count: int) -> list[bytes]:
    return [hashlib.sha256(str(i).encode()).digest() for i in range(count)]


@pytest.mark.parametrize("block_height", [0, 1, 2, 3, 5])
def test_roots_at_every_size_equal_the_recursive_definition(block_height):
    data = leaves(70)
    found = merkle.roots(data, range(1, 71), block_height=block_height)
    assert found == {size: merkle.root(data[:size]) for size in range(1, 71)}


def test_roots_around_full_size_blocks_equal_the_recursive_definition():
    block = 1 << merkle.BLOCK_HEIGHT
    data = leaves(2 * block + 3)
    sizes = {1, 2, 3, 4, 5, block - 1, block, block + 1, 2 * block - 1, 2 * block, 2 * block + 1, 2 * block + 3}
    assert merkle.roots(data, sizes) == {size: merkle.root(data[:size]) for size in sizes}


def test_only_the_sizes_the_leaves_reach_have_a_root():
    data = leaves(10)
    assert merkle.roots(data, [0, 3, 10, 11], block_height=2) == {3: merkle.root(data[:3]), 10: merkle.root(data)}
    assert merkle.roots(data, []) == {}


def test_roots_stop_reading_after_the_largest_size():
    def stream() -> Iterator[bytes]:
        yield from leaves(5)
        raise AssertionError("read past the largest size")

    assert merkle.roots(stream(), [5], block_height=1) == {5: merkle.root(leaves(5))}


def test_a_perfect_subtree_added_at_once_equals_its_leaves_added_one_by_one():
    data = leaves(12)
    one_by_one, at_once = merkle.Accumulator(), merkle.Accumulator()
    for leaf in data:
        one_by_one.add(leaf)
    at_once.add_subtree(3, bytes.fromhex(merkle.root(data[:8])))
    for leaf in data[8:]:
        at_once.add(leaf)
    assert (at_once.size, at_once.root(), at_once.frontier()) == (12, one_by_one.root(), one_by_one.frontier())
    assert at_once.root() == merkle.root(data)


def test_a_subtree_must_start_on_its_own_boundary():
    tree = merkle.Accumulator()
    tree.add(b"x")
    with pytest.raises(ValueError, match="cannot start at leaf 1"):
        tree.add_subtree(1, b"\x00" * 32)


def test_a_root_can_take_subtrees_not_yet_added():
    data = leaves(7)
    tree = merkle.Accumulator()
    for leaf in data[:4]:
        tree.add(leaf)
    then = [bytes.fromhex(merkle.root(data[4:6])), merkle.leaf_hash(data[6])]
    assert tree.root(then=then) == merkle.root(data)
    assert tree.size == 4
