"""Property tests for the pure audit core: canonical JSON, the chain and the Merkle tree."""

from __future__ import annotations

import hashlib

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.audit.canonical import canonical_json
from supervisor.audit.chain import GENESIS, encode_entry
from supervisor.audit.keys import AuditKey
from supervisor.audit.merkle import (
    Frontier,
    consistency_proof,
    leaf_hash,
    node_hash,
    range_subtrees,
    subtree_root,
    verify_consistency,
)
from supervisor.audit.verify import AuditTamperedError, LogVerifier

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def _rfc6962_mth(leaves: list[bytes]) -> bytes:
    """The recursive definition from RFC 6962 section 2.1, as the reference."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(_rfc6962_mth(leaves[:k]), _rfc6962_mth(leaves[k:]))


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@given(json_values)
def test_canonical_fast_path_matches_rfc8785(value: object) -> None:
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        with pytest.raises(ValueError):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


record_floats = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**60), 2**60).map(float)
records = st.dictionaries(
    st.sampled_from(["time", "latency_ms", "rate_tokens", "batch", "tenant", "détail", "a\u2028"]),
    record_floats | st.text(max_size=6) | st.dictionaries(st.text(max_size=3), record_floats, max_size=3),
    max_size=6,
)


@settings(max_examples=500)
@given(records)
def test_canonical_records_with_integral_and_extreme_floats_match_rfc8785(value: dict[str, object]) -> None:
    # Integral floats (a rounded quota counter, a latency of exactly 2.0 ms) take the fast
    # path as integers; a hash over different bytes would break every verifier.
    assert canonical_json(value) == rfc8785.dumps(value)


@given(st.integers(min_value=0, max_value=300))
def test_frontier_root_matches_rfc6962(n: int) -> None:
    leaves = _leaves(n)
    assert subtree_root(leaves) == _rfc6962_mth(leaves)


@given(st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=200))
def test_range_subtrees_rebuild_the_root(a: int, extra: int) -> None:
    leaves = _leaves(a + extra)
    frontier = Frontier()
    for leaf in leaves[:a]:
        frontier.append(leaf)
    for start, height in range_subtrees(a, a + extra):
        frontier.append_subtree(height, subtree_root(leaves[start : start + (1 << height)]))
    assert frontier.size == a + extra
    assert frontier.root() == _rfc6962_mth(leaves)


@given(st.integers(min_value=1, max_value=150), st.integers(min_value=0, max_value=150))
def test_consistency_proofs_verify_for_random_sizes(m: int, extra: int) -> None:
    leaves = _leaves(m + extra)
    n = m + extra
    proof = consistency_proof(m, leaves)
    assert verify_consistency(m, n, _rfc6962_mth(leaves[:m]), _rfc6962_mth(leaves), proof)


@given(st.integers(min_value=1, max_value=100), st.integers(min_value=1, max_value=100), st.data())
def test_consistency_proof_with_any_changed_hash_fails(m: int, extra: int, data: st.DataObject) -> None:
    leaves = _leaves(m + extra)
    n = m + extra
    proof = consistency_proof(m, leaves)
    old, new = _rfc6962_mth(leaves[:m]), _rfc6962_mth(leaves)
    if proof:
        i = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        bad = [*proof]
        bad[i] = hashlib.sha256(bad[i]).digest()
        assert not verify_consistency(m, n, old, new, bad)
    # A rewritten history (a different leaf inside the old tree) is never consistent.
    forged = [*leaves]
    forged[data.draw(st.integers(min_value=0, max_value=m - 1))] = leaf_hash(b"forged")
    assert not verify_consistency(m, n, old, _rfc6962_mth(forged), consistency_proof(m, forged))


KEY = AuditKey.generate()


def _chain(n: int) -> list[bytes]:
    lines, prev = [], GENESIS
    for seq in range(n):
        line, digest = encode_entry({"seq": seq, "prev": prev, "type": "call", "v": 1, "tenant": "acme", "n": seq})
        lines.append(line)
        prev = digest.hex()
    return lines


@settings(max_examples=200)
@given(st.integers(min_value=1, max_value=12), st.data())
def test_any_single_byte_change_is_detected(n: int, data: st.DataObject) -> None:
    lines = _chain(n)
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    line = lines[index][:-1]  # without its newline
    pos = data.draw(st.integers(min_value=0, max_value=len(line) - 1))
    new_byte = data.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != line[pos]))
    lines[index] = line[:pos] + bytes([new_byte]) + line[pos + 1 :] + b"\n"
    verifier = LogVerifier(KEY.public)
    verifier.start_segment("seg")
    with pytest.raises(AuditTamperedError):
        for raw in lines:
            for part in raw[:-1].split(b"\n"):  # a changed byte may be a newline
                verifier.feed(part)


def test_untouched_chain_verifies() -> None:
    verifier = LogVerifier(KEY.public)
    verifier.start_segment("seg")
    for raw in _chain(20):
        verifier.feed(raw[:-1])
    assert verifier.report.entries == 20
