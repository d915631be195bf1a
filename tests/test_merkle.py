"""The pure log code: RFC 6962 hashing and proofs, C2SP signed notes, checkpoints, cosignatures.

The property tests build one in-memory tree of 5,000 leaves (module level, about 0.1 s) and
draw tree sizes from 1..5,000: every inclusion and consistency proof verifies, and a proof for
a wrong leaf, index, size or root does not.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit.checkpoints import iter_notes
from gateway.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    MemoryTree,
    ProofError,
    frontier,
    leaf_hash,
    reference_root,
    verify_consistency,
    verify_inclusion,
)
from gateway.audit.note import (
    COSIGNATURE_V1,
    Checkpoint,
    NoteError,
    Signer,
    Verifier,
    cosign,
    open_checkpoint,
    parse_note,
    sign_checkpoint,
    verify_cosignature,
)

MAX = 5000
LEAVES = [leaf_hash(b"entry %d" % i) for i in range(MAX)]
TREE = MemoryTree()
for _leaf in LEAVES:
    TREE.append(_leaf)


def test_roots_match_the_recursive_definition_of_rfc_6962() -> None:
    for n in [*range(1, 70), 1000, 4095, 4096, 4097, MAX]:
        assert TREE.root(n) == reference_root(LEAVES[:n])
    # RFC 6962 leaf and node hashing, spelled out.
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert a == hashlib.sha256(b"\x00a").digest()
    assert reference_root([a, b]) == hashlib.sha256(b"\x01" + a + b).digest()


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_every_inclusion_proof_verifies_and_wrong_ones_do_not(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, MAX), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    root = TREE.root(size)
    proof = TREE.inclusion(index, size)
    verify_inclusion(index, size, LEAVES[index], proof, root)
    other = data.draw(st.integers(0, MAX - 1).filter(lambda i: i != index), label="other leaf")
    with pytest.raises(ProofError):
        verify_inclusion(index, size, LEAVES[other], proof, root)
    if size > 1:
        wrong_index = data.draw(st.integers(0, size - 1).filter(lambda i: i != index))
        with pytest.raises(ProofError):
            verify_inclusion(wrong_index, size, LEAVES[index], proof, root)
        wrong_size = data.draw(st.integers(index + 1, MAX).filter(lambda s: s != size))
        with pytest.raises(ProofError):
            verify_inclusion(index, wrong_size, LEAVES[index], proof, TREE.root(wrong_size))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_every_consistency_proof_verifies_and_wrong_ones_do_not(data: st.DataObject) -> None:
    second = data.draw(st.integers(1, MAX), label="second")
    first = data.draw(st.integers(1, second), label="first")
    proof = TREE.consistency(first, second)
    r1, r2 = TREE.root(first), TREE.root(second)
    verify_consistency(first, second, r1, r2, proof)
    if first == second:
        return
    with pytest.raises(ProofError):
        verify_consistency(first, second, hashlib.sha256(r1).digest(), r2, proof)
    with pytest.raises(ProofError):
        verify_consistency(first, second, r1, hashlib.sha256(r2).digest(), proof)
    wrong = data.draw(st.integers(1, second).filter(lambda s: s != first), label="wrong first")
    with pytest.raises(ProofError):
        verify_consistency(wrong, second, TREE.root(wrong), r2, proof)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 70), min_size=1, max_size=12))
def test_a_frontier_adds_exactly_the_nodes_of_the_tree_in_any_grouping(groups: list[int]) -> None:
    # The writer appends one group of leaves per transaction, from the frontier it kept.
    grown, rows, size = Frontier(), [], 0
    for count in groups:
        if size + count > MAX:
            break
        rows += grown.extend(LEAVES[size : size + count])
        size += count
        assert grown.size == size
        assert grown.root() == (TREE.root(size) if size else EMPTY_ROOT)
        # What a writer reads back when it has no copy: the same frontier.
        again = Frontier.of(size, TREE.nodes)
        assert again.hashes == grown.hashes and again.nodes() == grown.nodes()
    expected = {(lv, i): h for (lv, i), h in TREE.nodes.items() if (i + 1) << lv <= size}
    assert len(rows) == len(expected)  # every node once
    assert {(lv, i): h for lv, i, h in rows} == expected


def test_a_frontier_refuses_missing_or_miscounted_subtrees() -> None:
    nodes = dict(TREE.nodes)
    del nodes[frontier(13)[1]]
    with pytest.raises(ProofError):
        Frontier.of(13, nodes)
    with pytest.raises(ProofError):
        Frontier(13, [LEAVES[0]])
    copy = Frontier.of(13, TREE.nodes).copy()
    copy.extend([LEAVES[13]])
    assert copy.size == 14 and Frontier.of(13, TREE.nodes).size == 13


def test_impossible_proof_parameters_are_refused() -> None:
    for index, size in ((0, 0), (5, 5), (-1, 3)):
        with pytest.raises(ProofError):
            TREE.inclusion(index, size)
    with pytest.raises(ProofError):
        TREE.consistency(5, 4)
    with pytest.raises(ProofError):
        TREE.inclusion(0, MAX + 1)


def test_checkpoint_note_round_trip_cosignature_and_key_ids() -> None:
    log = Signer.generate("ketenpoort.test/audit")
    vkey = log.verifier.vkey()
    name, key_id, _ = vkey.split("+", 2)
    raw = log.verifier.public
    expected = hashlib.sha256(name.encode() + b"\n\x01" + raw).digest()[:4]
    assert bytes.fromhex(key_id) == expected
    checkpoint = Checkpoint("ketenpoort.test/audit", 12, TREE.root(12))
    note = sign_checkpoint(checkpoint, log)
    assert note.text == f"ketenpoort.test/audit\n12\n{checkpoint.text().split(chr(10))[2]}\n"
    got, parsed = open_checkpoint(note.render(), Verifier.parse(vkey))
    assert got == checkpoint
    witness = Signer.generate("witness.test/w1", COSIGNATURE_V1)
    assert Signer.parse(witness.skey()) == witness
    cosigned = parsed.with_signature(cosign(parsed, witness, 1_700_000_000))
    again = parse_note(cosigned.render())
    assert verify_cosignature(again, witness.verifier) == 1_700_000_000
    open_checkpoint(again.render(), log.verifier)  # the log's signature still verifies
    files = list(iter_notes(note.render() + "\n" + again.render() + "\n"))
    assert [n.text for n in files] == [note.text, note.text]


def test_flipping_any_byte_of_a_signed_checkpoint_fails_verification() -> None:
    log = Signer.generate("ketenpoort.test/audit")
    text = sign_checkpoint(Checkpoint("ketenpoort.test/audit", 7, TREE.root(7)), log).render()
    raw = text.encode()
    for i in range(len(raw)):
        flipped = bytearray(raw)
        flipped[i] ^= 0x01
        with pytest.raises(NoteError):
            open_checkpoint(bytes(flipped), log.verifier)
