"""RFC 6962 (Certificate Transparency) Merkle trees over audit records: pure functions.

Leaves are hashed ``SHA-256(0x00 || data)`` and interior nodes ``SHA-256(0x01 || l || r)``,
so a leaf can never be passed off as a node (second-preimage attack on the tree). A
:class:`Frontier` is the compact state of a growing tree, the roots of the perfect subtrees
covering ``[0, size)``: log2(size) hashes, enough to extend the tree and compute its root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "Frontier",
    "consistency_proof",
    "leaf_hash",
    "node_hash",
    "range_subtrees",
    "subtree_root",
    "verify_consistency",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class Frontier:
    """The roots of the perfect subtrees that cover ``[0, size)``, largest (leftmost) first."""

    __slots__ = ("_nodes", "size")

    def __init__(self, size: int = 0, nodes: Sequence[bytes] = ()) -> None:
        if len(nodes) != size.bit_count():
            raise ValueError(f"got {len(nodes)} frontier hashes, expected {size.bit_count()} for size {size}")
        self.size = size
        self._nodes = list(nodes)

    @property
    def nodes(self) -> tuple[bytes, ...]:
        return tuple(self._nodes)

    def copy(self) -> Frontier:
        return Frontier(self.size, self._nodes)

    def append(self, leaf: bytes) -> None:
        """Add the leaf hash ``leaf`` at position ``size``."""
        nodes = self._nodes
        nodes.append(leaf)
        n = self.size
        while n & 1:
            right = nodes.pop()
            nodes[-1] = hashlib.sha256(b"\x01" + nodes[-1] + right).digest()
            n >>= 1
        self.size += 1

    def append_subtree(self, height: int, root: bytes) -> None:
        """Add a perfect subtree of 2**height leaves; ``size`` must be a multiple of its width."""
        width = 1 << height
        if self.size % width:
            raise ValueError(f"a subtree of {width} leaves cannot start at {self.size}")
        nodes = self._nodes
        nodes.append(root)
        n = self.size >> height
        while n & 1:
            right = nodes.pop()
            nodes[-1] = node_hash(nodes[-1], right)
            n >>= 1
        self.size += width

    def root(self) -> bytes:
        """The RFC 6962 Merkle tree hash of the leaves so far."""
        if not self._nodes:
            return EMPTY_ROOT
        acc = self._nodes[-1]
        for node in reversed(self._nodes[:-1]):
            acc = node_hash(node, acc)
        return acc


def subtree_root(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes (any count), computed iteratively."""
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    return frontier.root()


def range_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """``[start, end)`` split into aligned perfect subtrees, left to right, as (start, height)."""
    parts: list[tuple[int, int]] = []
    while start < end:
        height = (start & -start).bit_length() - 1 if start else (end - start).bit_length() - 1
        while start + (1 << height) > end:
            height -= 1
        parts.append((start, height))
        start += 1 << height
    return parts


def _largest_power_of_two_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 section 2.1.2 PROOF(m, D[n]) with ``m = old_size`` and ``D[n] = leaves``."""
    if not 0 < old_size <= len(leaves):
        raise ValueError(f"got old size {old_size}, expected 1..{len(leaves)}")

    def sub(m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if complete else [subtree_root(leaves[lo:hi])]
        k = _largest_power_of_two_below(n)
        if m <= k:
            return [*sub(m, lo, lo + k, complete), subtree_root(leaves[lo + k : hi])]
        return [*sub(m - k, lo + k, hi, False), subtree_root(leaves[lo : lo + k])]

    return sub(old_size, 0, len(leaves), True)


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Iterable[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2: does the tree of ``new_size`` extend the one of ``old_size``?"""
    path = list(proof)
    if old_size < 0 or old_size > new_size:
        return False
    if old_size == new_size:
        return not path and old_root == new_root
    if old_size == 0:
        return not path
    if not path:
        return False
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
