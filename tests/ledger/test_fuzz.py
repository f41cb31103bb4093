"""Fuzzing every parser of outside input: whatever it is fed, only the project's own domain errors come out.

Each parser that reads bytes or text from outside is fed (a) arbitrary bytes or text and (b) structure-aware
mutations of a valid input that the project's own code made: flipped bits, truncations, duplicated, dropped,
swapped and repeated lines, numbers made huge, negative or oddly spelled, base64 swapped for other base64
(other lengths, the URL-safe alphabet, no or extra padding, non-zero padding bits), unicode inserted (lone
surrogates, em dashes, line separators, a byte-order mark), and JSON values replaced, dropped, renamed,
wrapped and nested thousands deep. A parser either returns or raises the `LedgerError` subclass it documents;
any other exception (ValueError, KeyError, UnicodeError, RecursionError, OverflowError, IndexError, ...) fails
the test. Every valid input still parses (a round trip), and whatever a parser accepts re-encodes to
something it accepts again with the same meaning.

The parsers: signed notes, signature lines and verifier keys (`ledger.note`); checkpoint bodies, signed
checkpoints and witness cosignatures (`ledger.checkpoint`); transaction bytes, the wire JSON and the
registry's request body (`ledger.transactions`, `registry.transactions.service`); log entries (`ledger.log`);
Merkle proofs with arbitrary hashes, sizes and indexes (`ledger.merkle`); certificates, also over forged logs
re-sealed under the registry's key so that the checks past the inclusion proofs are reached
(`ledger.certificate`); key files, plain and encrypted (`ledger.keys`), and the PKCS#8 / OpenSSH import of
``cdcer keys import`` (`cli.keys`); serial blocks (`ledger.serials`); strict JSON and base64 (`ledger.encoding`);
the registry's page cursors (`registry.public.service`). At the registry's edge the domain error is a 4xx
`RegistryError`; for the CLI's import it is a one-line usage error (exit status 2).

Each test runs 200 examples in the default suite and 2,000 (1,000 for the slowest parsers) under ``-m slow``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.pwhash import argon2id

import ledger.keys
from cli.keys import _load_any
from ledger.certificate import parse_certificate, verify_certificate
from ledger.checkpoint import (
    Checkpoint,
    CosignatureSigner,
    CosignatureVerifier,
    add_cosignature,
    cosignature_timestamp,
    open_checkpoint,
    parse_checkpoint_body,
    sign_checkpoint,
    verify_cosignatures,
)
from ledger.encoding import b64decode, loads_strict, parse_canonical_json
from ledger.errors import (
    CertificateError,
    EncodingError,
    KeyFileError,
    LedgerError,
    NoteError,
    ProofError,
)
from ledger.keys import PublicKey, decode_key_file, encode_key_file, read_key_file, read_public_key
from ledger.ledger import Ledger, found_registry
from ledger.log import Entry, decode_entry
from ledger.merkle import (
    Frontier,
    MemoryNodeStore,
    consistency_proof,
    frontier_from_last_leaf,
    inclusion_proof,
    leaf_hash,
    root_at,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from ledger.note import NoteVerifier, open_note, parse_note, parse_signature_line, parse_verifier_key, sign_note
from ledger.serials import parse_block, parse_serial
from ledger.storage import schema
from ledger.storage.engine import make_engine
from ledger.transactions import SignedTransaction, TransactionSigner, decode_body, encode_body
from registry.errors import BadRequest, RegistryError
from registry.public.service import decode_key, encode_cursor
from registry.transactions.service import parse_signed_transaction
from tests.conftest import AUTHORITY, AUTHORITY_NAME, Story, log_signer
from tests.ledger.scenario import ORIGIN, seeded_key
from tests.ledger.test_certificate import VKEY, build, log_leaves, reseal
from tests.ledger.test_checkpoint import REMORA_VKEY, SPEC_BODY, SPEC_COSIGNED
from tests.ledger.test_note import DOUBLE_NOTE, PETER_NOTE, PETER_VKEY, peter, signer
from tests.ledger.test_transactions import EXAMPLES as PAYLOADS

RUNS = [pytest.param(200, id="default"), pytest.param(2000, id="long", marks=pytest.mark.slow)]
"""Examples per parser: a quick look in the default suite, a long one under ``-m slow`` (`make test-long`)."""
SLOW_RUNS = [pytest.param(200, id="default"), pytest.param(1000, id="long", marks=pytest.mark.slow)]
"""For the parsers whose examples cost most (a whole certificate, a file and a KDF, base64 of large JSON)."""


def fuzz(examples: int) -> settings:
    """The hypothesis settings of one fuzz run."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


# --- byte and text mutations ----------------------------------------------------------------------------

SURROGATES = ("\ud800", "\udbff", "\udc00", "\udfff")
AWKWARD_TEXT = (
    *("", " ", "\t", "\n", "\n\n", "\r", "\r\n", "\x00", "\x1b", "\x7f", "\u2014", "\u2014 ", "\u2013"),
    *("+", "=", "==", ":", ";", ",", '"', "'", "\\", "[", "]", "{", "}", "(", ")", "/", "_", "-"),
    *("\ufeff", "\u2028", "\u2029", "\u0085", "\u00a0", "\u200b", "\u3000", "e\u0301", "é", "碳", "\U0001f600"),
    *SURROGATES,
)
"""Characters parsers trip over: separators of the formats, controls, odd spaces, lone surrogates."""
AWKWARD_NUMBERS = (0, 1, -1, 2**31 - 1, 2**32, 2**53 - 1, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**30)
NUMBER_SPELLINGS = ("-0", "00", "007", "1e3", "1E400", "1.5", "+1", "0x10", "1_000", " 1", "١٢", "Infinity", "NaN")
"""Ways to write a number that a careless parser might accept (``int("١٢")`` is 12 in Python)."""

awkward_text = st.one_of(st.sampled_from(AWKWARD_TEXT), st.text(min_size=1, max_size=4))
awkward_integers = st.one_of(
    st.sampled_from(AWKWARD_NUMBERS), st.sampled_from(AWKWARD_NUMBERS).map(lambda n: -n), st.integers()
)


def utf8(text: str) -> bytes:
    """UTF-8, with lone surrogates written as their (invalid) three-byte forms."""
    return text.encode("utf-8", "surrogatepass")


@st.composite
def other_base64(draw: st.DrawFn) -> str:
    """Base64 of other bytes, in a standard or a subtly wrong form."""
    size = draw(st.one_of(st.integers(0, 100), st.sampled_from([4, 5, 31, 32, 33, 63, 64, 65, 68, 72, 73])))
    text = base64.b64encode(draw(st.binary(min_size=size, max_size=size))).decode()
    style = draw(st.sampled_from(["standard", "urlsafe", "unpadded", "extra padding", "spaced", "padding bits"]))
    if style == "urlsafe":
        return text.replace("+", "-").replace("/", "_")
    if style == "unpadded":
        return text.rstrip("=")
    if style == "extra padding":
        return text + "="
    if style == "spaced" and text:
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.sampled_from([" ", "\n", "\t"])) + text[at:]
    if style == "padding bits" and text.endswith("="):
        # The same bytes with non-zero unused bits: a second spelling that strict decoders should not trust.
        at = len(text.rstrip("=")) - 1
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        return text[:at] + alphabet[(alphabet.index(text[at]) + 1) % 64] + text[at + 1 :]
    return text


Mutation = Callable[[st.DrawFn, bytes], bytes]


def _flip_bit(draw: st.DrawFn, data: bytes) -> bytes:
    if not data:
        return data
    at = draw(st.integers(0, len(data) - 1))
    return data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1 :]


def _set_byte(draw: st.DrawFn, data: bytes) -> bytes:
    if not data:
        return data
    at = draw(st.integers(0, len(data) - 1))
    return data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]


def _insert(draw: st.DrawFn, data: bytes) -> bytes:
    chunk = draw(st.one_of(st.binary(min_size=1, max_size=8), awkward_text.map(utf8)))
    at = draw(st.integers(0, len(data)))
    return data[:at] + chunk + data[at:]


def _delete(draw: st.DrawFn, data: bytes) -> bytes:
    if not data:
        return data
    start = draw(st.integers(0, len(data) - 1))
    return data[:start] + data[start + draw(st.integers(1, 16)) :]


def _truncate(draw: st.DrawFn, data: bytes) -> bytes:
    return data[: draw(st.integers(0, len(data)))]


def _splice(draw: st.DrawFn, data: bytes) -> bytes:
    """Copy a piece of the input elsewhere in it."""
    start = draw(st.integers(0, len(data)))
    piece = data[start : start + draw(st.integers(1, 64))]
    at = draw(st.integers(0, len(data)))
    return data[:at] + piece + data[at:]


def _lines(draw: st.DrawFn, data: bytes) -> bytes:
    lines = data.split(b"\n")
    at = draw(st.integers(0, len(lines) - 1))
    how = draw(st.sampled_from(["duplicate", "drop", "swap", "repeat", "blank", "crlf"]))
    if how == "duplicate":
        lines.insert(at, lines[at])
    elif how == "drop":
        del lines[at]
    elif how == "swap":
        other = draw(st.integers(0, len(lines) - 1))
        lines[at], lines[other] = lines[other], lines[at]
    elif how == "repeat":  # past limits such as a note's 100 signature lines
        lines[at : at + 1] = [lines[at]] * draw(st.integers(2, 120))
    elif how == "blank":
        lines.insert(at, b"")
    else:
        lines[at] += b"\r"
    return b"\n".join(lines)


_NUMBER = re.compile(rb"-?[0-9]+")


def _number(draw: st.DrawFn, data: bytes) -> bytes:
    spans = [match.span() for match in _NUMBER.finditer(data)]
    if not spans:
        return _insert(draw, data)
    start, end = draw(st.sampled_from(spans))
    number = draw(st.one_of(awkward_integers.map(str), st.sampled_from(NUMBER_SPELLINGS)))
    return data[:start] + utf8(number) + data[end:]


_BASE64 = re.compile(rb"[A-Za-z0-9+/]{6,}={0,2}")


def _base64(draw: st.DrawFn, data: bytes) -> bytes:
    spans = [match.span() for match in _BASE64.finditer(data)]
    if not spans:
        return _insert(draw, data)
    start, end = draw(st.sampled_from(spans))
    return data[:start] + draw(other_base64()).encode() + data[end:]


def _nest(draw: st.DrawFn, data: bytes) -> bytes:
    depth = draw(st.sampled_from([2, 64, 1000, 5000, 100_000]))
    opening, closing = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    at = draw(st.integers(0, len(data)))
    return data[:at] + opening * depth + b"0" + closing * depth + data[at:]


BYTE_MUTATIONS: tuple[Mutation, ...] = (
    _flip_bit,
    _set_byte,
    _insert,
    _delete,
    _truncate,
    _splice,
    _lines,
    _number,
    _base64,
    _nest,
)


@st.composite
def mutations(draw: st.DrawFn, seed: bytes, steps: int = 3) -> bytes:
    """`seed` changed by one to `steps` mutations of the kinds above."""
    data = seed
    for _ in range(draw(st.integers(1, steps))):
        data = draw(st.sampled_from(BYTE_MUTATIONS))(draw, data)
    return data


def text_mutations(seed: str) -> st.SearchStrategy[str]:
    """`seed` mutated as UTF-8 bytes and read back, invalid bytes becoming lone surrogates."""
    return mutations(utf8(seed)).map(lambda data: data.decode("utf-8", "surrogateescape"))


def anything_like(*seeds: bytes) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, or a mutation of one of the valid `seeds`."""
    return st.one_of(st.binary(max_size=512), st.sampled_from(seeds).flatmap(mutations))


def text_like(*seeds: str) -> st.SearchStrategy[str]:
    """Arbitrary text (lone surrogates included), or a mutation of one of the valid `seeds`."""
    return st.one_of(
        st.text(max_size=200),
        st.lists(st.sampled_from(AWKWARD_TEXT)).map("".join),
        st.sampled_from(seeds).flatmap(text_mutations),
    )


# --- JSON mutations ----------------------------------------------------------------------------------------

JsonPath = tuple[str | int, ...]
_DEEP = re.compile(r'"\\u0000deep:([0-9]+)\\u0000"')


def deep(depth: int) -> str:
    """A placeholder for arrays nested `depth` deep (written out only when the value is serialised)."""
    return f"\x00deep:{depth}\x00"


awkward_json: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([None, True, False, 0.5, -0.0, 1e300, float("nan"), float("inf"), "A" * 70_000]),
    st.builds(list),  # fresh each time: a later mutation may add to it
    st.builds(dict),
    awkward_integers,
    awkward_text,
    st.text(max_size=16),
    other_base64(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.sampled_from([100, 3000, 100_000]).map(deep),
)


def _paths(value: Any) -> list[JsonPath]:
    found: list[JsonPath] = []
    pending: list[tuple[JsonPath, Any]] = [((), value)]
    while pending:
        path, item = pending.pop()
        found.append(path)
        if isinstance(item, dict):
            pending.extend(((*path, key), child) for key, child in item.items())
        elif isinstance(item, list):
            pending.extend(((*path, index), child) for index, child in enumerate(item))
    return found


def _at(value: Any, path: JsonPath) -> Any:
    for step in path:
        value = value[step]
    return value


def _mutate_json(draw: st.DrawFn, value: Any) -> Any:
    path = draw(st.sampled_from(_paths(value)))
    target = _at(value, path)
    parent = _at(value, path[:-1]) if path else None
    how = draw(st.sampled_from(["replace", "replace", "drop", "add", "rename", "wrap", "retype", "duplicate"]))
    new: Any
    if how == "drop" and parent is not None:
        del parent[path[-1]]
        return value
    if how == "add" and isinstance(target, dict):
        target[draw(st.one_of(awkward_text, st.text(max_size=8)))] = draw(awkward_json)
        return value
    if how == "add" and isinstance(target, list):
        target.insert(draw(st.integers(0, len(target))), draw(awkward_json))
        return value
    if how == "rename" and isinstance(parent, dict):
        name = str(path[-1])
        renamed = draw(st.sampled_from([name.upper(), name + " ", "\u00a0" + name, name[:-1], name + "\ud800"]))
        parent[renamed] = parent.pop(name)
        return value
    if how == "duplicate" and isinstance(parent, list):
        parent.insert(int(path[-1]), copy.deepcopy(target))
        return value
    if how == "wrap":
        new = draw(st.sampled_from([[target], {"value": target}]))
    elif how == "retype" and isinstance(target, bool | int | float):
        new = str(target)
    elif how == "retype" and isinstance(target, str):
        new = int(target) if target.isascii() and target.isdigit() and len(target) < 100 else len(target)
    elif isinstance(target, int) and not isinstance(target, bool):
        new = draw(st.one_of(awkward_integers, awkward_json))
    elif isinstance(target, str) and draw(st.booleans()):
        new = draw(st.one_of(other_base64(), awkward_text.map(lambda text: target + text)))
    else:
        new = draw(awkward_json)
    if parent is None:
        return new
    parent[path[-1]] = new
    return value


@st.composite
def json_mutations(draw: st.DrawFn, seed: Any, steps: int = 3) -> Any:
    """A copy of the JSON value `seed` changed one to `steps` times (may hold `deep` placeholders)."""
    value = copy.deepcopy(seed)
    for _ in range(draw(st.integers(1, steps))):
        value = _mutate_json(draw, value)
    return value


def materialise(value: Any) -> Any:
    """The value with every `deep` placeholder replaced by real nested arrays."""
    if isinstance(value, str) and (match := re.fullmatch("\x00deep:([0-9]+)\x00", value)):
        nested: list[Any] = []
        for _ in range(int(match[1]) - 1):
            nested = [nested]
        return nested
    if isinstance(value, dict):
        return {key: materialise(child) for key, child in value.items()}
    if isinstance(value, list):
        return [materialise(child) for child in value]
    return value


@st.composite
def json_documents(draw: st.DrawFn, seed: Any, steps: int = 3) -> bytes:
    """A JSON mutation of `seed`, serialised canonically most of the time (so strict parsers look inside)."""
    value = draw(json_mutations(seed, steps))
    style = draw(st.sampled_from(["canonical", "canonical", "ascii", "pretty"]))
    if style == "canonical":
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    elif style == "ascii":
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    else:
        text = json.dumps(value, indent=1)
    text = _DEEP.sub(lambda match: "[" * int(match[1]) + "]" * int(match[1]), text)
    return utf8(text)


def json_like(seed: Any) -> st.SearchStrategy[bytes]:
    """Structure-aware mutations of a JSON value, as bytes, optionally mutated again byte-wise."""
    canonical = utf8(json.dumps(seed, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
    return st.one_of(json_documents(seed), mutations(canonical), json_documents(seed).flatmap(mutations))


# --- signed notes, signature lines and verifier keys ---------------------------------------------------------

REGISTRY = log_signer()
WITNESS = CosignatureSigner("witness.example/w1", seeded_key("witness").seed)
NOTE = sign_note("a note\n\nwith a blank line, 碳 and a long line " + "x" * 200 + "\n", peter(), signer("other", 7))
NOTE_VERIFIERS = [peter().verifier(), signer("other", 7).verifier()]
CHECKPOINT = Checkpoint(ORIGIN, 17, hashlib.sha256(b"root").digest(), ("an extension line",))
SIGNED_CHECKPOINT = add_cosignature(
    sign_checkpoint(CHECKPOINT, REGISTRY), WITNESS.cosign(CHECKPOINT.body(), 1_700_000_000), WITNESS.verifier()
)
NOTES = (NOTE, PETER_NOTE, DOUBLE_NOTE, SIGNED_CHECKPOINT, SPEC_COSIGNED)
SIGNATURE_LINES = tuple(line + "\n" for note in NOTES for line in note.decode().split("\n\n")[-1].splitlines())
VERIFIER_KEYS = (PETER_VKEY, REMORA_VKEY, REGISTRY.verifier_key(), WITNESS.verifier().verifier_key())


@pytest.mark.parametrize("examples", RUNS)
def test_signed_notes_raise_only_note_errors(examples: int) -> None:
    for data in (NOTE, PETER_NOTE, DOUBLE_NOTE):
        assert parse_note(data).to_bytes() == data
    assert len(open_note(NOTE, NOTE_VERIFIERS).verified) == 2

    @fuzz(examples)
    @given(data=anything_like(*NOTES))
    def run(data: bytes) -> None:
        try:
            note = parse_note(data)
        except NoteError:
            return
        assert parse_note(note.to_bytes()) == note
        try:
            opened = open_note(data, NOTE_VERIFIERS)
        except NoteError:
            return
        assert opened.verified
        assert set(opened.verified) <= set(note.signatures)

    run()


@pytest.mark.parametrize("examples", RUNS)
def test_signature_lines_raise_only_note_errors(examples: int) -> None:
    for line in SIGNATURE_LINES:
        assert parse_signature_line(line).line() == line

    @fuzz(examples)
    @given(line=text_like(*SIGNATURE_LINES))
    def run(line: str) -> None:
        try:
            signature = parse_signature_line(line)
        except NoteError:
            return
        assert parse_signature_line(signature.line()) == signature

    run()


@pytest.mark.parametrize("examples", RUNS)
def test_verifier_keys_raise_only_note_errors(examples: int) -> None:
    assert NoteVerifier.from_vkey(PETER_VKEY).verifier_key() == PETER_VKEY
    assert CosignatureVerifier.from_vkey(REMORA_VKEY).verifier_key() == REMORA_VKEY

    @fuzz(examples)
    @given(vkey=text_like(*VERIFIER_KEYS))
    def run(vkey: str) -> None:
        try:
            parsed = parse_verifier_key(vkey)
        except NoteError:
            return
        assert parsed.key_id.hex() == vkey.split("+")[1].lower()
        for verifier_type in (NoteVerifier, CosignatureVerifier):
            try:
                verifier = verifier_type.from_vkey(vkey)
            except NoteError:
                continue
            assert verifier_type.from_vkey(verifier.verifier_key()) == verifier

    run()


# --- checkpoints and cosignatures --------------------------------------------------------------------------


@pytest.mark.parametrize("examples", RUNS)
def test_checkpoint_bodies_raise_only_note_errors(examples: int) -> None:
    assert parse_checkpoint_body(CHECKPOINT.body()) == CHECKPOINT
    assert parse_checkpoint_body(SPEC_BODY).body() == SPEC_BODY

    @fuzz(examples)
    @given(text=text_like(CHECKPOINT.body(), SPEC_BODY))
    def run(text: str) -> None:
        try:
            checkpoint = parse_checkpoint_body(text)
        except NoteError:
            return
        assert parse_checkpoint_body(checkpoint.body()) == checkpoint

    run()


@pytest.mark.parametrize("examples", RUNS)
def test_signed_checkpoints_raise_only_note_errors(examples: int) -> None:
    witnesses = [WITNESS.verifier()]
    signed = open_checkpoint(SIGNED_CHECKPOINT, REGISTRY.verifier(), origin=ORIGIN)
    assert signed.checkpoint == CHECKPOINT
    assert [c.timestamp for c in verify_cosignatures(signed, witnesses)] == [1_700_000_000]

    @fuzz(examples)
    @given(data=anything_like(SIGNED_CHECKPOINT, sign_checkpoint(CHECKPOINT, REGISTRY)))
    def run(data: bytes) -> None:
        try:
            opened = open_checkpoint(data, REGISTRY.verifier(), origin=ORIGIN)
            cosignatures = verify_cosignatures(opened, witnesses)
        except NoteError:
            return
        assert opened.checkpoint.origin == ORIGIN
        for signature in opened.note.signatures:
            try:
                cosignature_timestamp(signature)
            except NoteError:
                continue
        assert all(c.name == WITNESS.name for c in cosignatures)

    run()


@pytest.mark.parametrize("examples", RUNS)
def test_cosignature_lines_raise_only_note_errors(examples: int) -> None:
    line = WITNESS.cosign(CHECKPOINT.body(), 1_700_000_001).line()
    unsigned = sign_checkpoint(CHECKPOINT, REGISTRY)
    assert add_cosignature(unsigned, parse_signature_line(line), WITNESS.verifier()) != unsigned

    @fuzz(examples)
    @given(line=text_like(line), checkpoint=st.one_of(st.just(unsigned), mutations(unsigned)))
    def run(line: str, checkpoint: bytes) -> None:
        try:
            add_cosignature(checkpoint, parse_signature_line(line), WITNESS.verifier())
        except NoteError:
            return

    run()


# --- transactions and log entries -------------------------------------------------------------------------

AT = datetime(2025, 3, 1, 8, 0, 0, 123456, tzinfo=UTC)
TRANSACTIONS = [
    TransactionSigner(ORIGIN, "alice", seeded_key("alice")).sign(payload, at=AT, nonce=f"fuzz-nonce-{number:06d}")
    for number, payload in enumerate(PAYLOADS.values())
]
WIRE = [tx.to_json() for tx in TRANSACTIONS]
ENTRIES = [
    Entry(
        index,
        AT,
        hashlib.sha256(bytes([index])).digest(),
        seeded_key("alice").public_key.raw,
        tx.signature,
        tx.body_bytes,
    )
    for index, tx in enumerate(TRANSACTIONS)
]


@pytest.mark.parametrize("examples", RUNS)
def test_transaction_bytes_raise_only_encoding_errors(examples: int) -> None:
    for tx in TRANSACTIONS:
        assert decode_body(tx.body_bytes) == tx.body

    @fuzz(examples)
    @given(
        data=st.one_of(
            st.binary(max_size=512),
            st.sampled_from(TRANSACTIONS).flatmap(lambda tx: mutations(tx.body_bytes)),
            st.sampled_from(WIRE).flatmap(lambda wire: json_documents(wire["body"])),
        )
    )
    def run(data: bytes) -> None:
        try:
            body = decode_body(data)
        except EncodingError:
            return
        assert decode_body(encode_body(body)) == body

    run()


@pytest.mark.parametrize("examples", RUNS)
def test_wire_transactions_raise_only_encoding_errors(examples: int) -> None:
    for tx, wire in zip(TRANSACTIONS, WIRE, strict=True):
        assert SignedTransaction.from_json(wire) == tx

    @fuzz(examples)
    @given(value=st.one_of(awkward_json, st.sampled_from(WIRE).flatmap(json_mutations)))
    def run(value: Any) -> None:
        try:
            tx = SignedTransaction.from_json(materialise(value))
        except EncodingError:
            return
        assert SignedTransaction.from_json(tx.to_json()) == tx

    run()


@pytest.mark.parametrize("examples", RUNS)
def test_request_bodies_raise_only_registry_errors(examples: int) -> None:
    """The registry's write path reads the request body with its own JSON rules (no duplicate keys)."""
    for tx, wire in zip(TRANSACTIONS, WIRE, strict=True):
        assert parse_signed_transaction(json.dumps(wire).encode()) == tx

    @fuzz(examples)
    @given(data=st.one_of(st.binary(max_size=512), st.sampled_from(WIRE).flatmap(json_like)))
    def run(data: bytes) -> None:
        try:
            parse_signed_transaction(data)
        except RegistryError as exc:
            refused = exc
        else:
            return
        assert 400 <= refused.status < 500  # the client's mistake, never the server's

    run()


@pytest.mark.parametrize("examples", RUNS)
def test_log_entries_raise_only_encoding_errors(examples: int) -> None:
    for entry in ENTRIES:
        assert decode_entry(entry.encode(), index=entry.index) == entry

    @fuzz(examples)
    @given(
        data=st.one_of(
            st.binary(max_size=512),
            st.sampled_from(ENTRIES).flatmap(lambda entry: mutations(entry.encode())),
            st.sampled_from(ENTRIES).flatmap(lambda entry: json_documents(json.loads(entry.encode()))),
        )
    )
    def run(data: bytes) -> None:
        try:
            entry = decode_entry(data)
        except EncodingError:
            return
        assert entry.encode() == data
        try:
            entry.body()
        except EncodingError:
            return

    run()


@pytest.mark.parametrize("examples", RUNS)
def test_strict_json_and_base64_raise_only_encoding_errors(examples: int) -> None:
    @fuzz(examples)
    @given(
        data=st.one_of(st.binary(max_size=256), st.sampled_from(WIRE).flatmap(json_like)),
        text=text_like(base64.b64encode(bytes(range(32))).decode(), "AA==", ""),
        size=st.one_of(st.none(), st.integers(0, 40)),
    )
    def run(data: bytes, text: str, size: int | None) -> None:
        try:
            loads_strict(data)
            parse_canonical_json(data)
        except EncodingError:
            pass
        try:
            decoded = b64decode(text, size=size)
        except EncodingError:
            return
        assert base64.b64decode(text) == decoded
        assert size is None or len(decoded) == size

    run()


# --- Merkle proofs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tree:
    """A small tree: its node store, leaf hashes and root."""

    nodes: MemoryNodeStore
    leaves: list[bytes]

    @property
    def size(self) -> int:
        return len(self.leaves)

    def root(self, size: int | None = None) -> bytes:
        return root_at(self.nodes, self.size if size is None else size)


def _tree(size: int) -> Tree:
    nodes, frontier = MemoryNodeStore(), Frontier.empty()
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    for leaf in leaves:
        nodes.put_nodes(frontier.append(leaf))
    return Tree(nodes, list(leaves))


TREES = {size: _tree(size) for size in (1, 2, 3, 7, 8, 13, 64, 100)}
hash_like: st.SearchStrategy[Any] = st.one_of(
    st.binary(min_size=32, max_size=32),
    st.binary(max_size=40),
    st.sampled_from([None, "", "A" * 32, 32, b"\x00" * 31, b"\x00" * 33, bytearray(32)]),
)
index_like: st.SearchStrategy[Any] = st.one_of(awkward_integers, st.sampled_from([True, False, None, 1.0, "1", -0.0]))


@st.composite
def proof_lists(draw: st.DrawFn, proof: Sequence[bytes]) -> list[Any]:
    """A valid proof with hashes flipped, dropped, added, duplicated, swapped or of another type."""
    changed: list[Any] = list(proof)
    for _ in range(draw(st.integers(0, 3))):
        how = draw(st.sampled_from(["flip", "drop", "add", "duplicate", "swap", "replace"]))
        at = draw(st.integers(0, max(len(changed) - 1, 0)))
        if how == "add" or not changed:
            changed.insert(at, draw(hash_like))
        elif how == "flip" and isinstance(changed[at], bytes):
            changed[at] = _flip_bit(draw, changed[at])
        elif how == "drop":
            del changed[at]
        elif how == "duplicate":
            changed.insert(at, changed[at])
        elif how == "swap":
            other = draw(st.integers(0, len(changed) - 1))
            changed[at], changed[other] = changed[other], changed[at]
        else:
            changed[at] = draw(hash_like)
    return changed


@pytest.mark.parametrize("examples", RUNS)
def test_inclusion_proofs_raise_only_proof_errors(examples: int) -> None:
    @fuzz(examples)
    @given(data=st.data(), tree=st.sampled_from(list(TREES.values())))
    def run(data: st.DataObject, tree: Tree) -> None:
        index = data.draw(st.integers(0, tree.size - 1), label="index")
        proof = inclusion_proof(tree.nodes, index, tree.size)
        verify_inclusion(leaf=tree.leaves[index], index=index, size=tree.size, proof=proof, root=tree.root())
        leaf = data.draw(st.one_of(st.just(tree.leaves[index]), hash_like), label="leaf")
        at = data.draw(st.one_of(st.just(index), index_like), label="at")
        size = data.draw(st.one_of(st.just(tree.size), index_like), label="size")
        root = data.draw(st.one_of(st.just(tree.root()), hash_like), label="root")
        changed = data.draw(proof_lists(proof), label="proof")
        try:
            verify_inclusion(leaf=leaf, index=at, size=size, proof=changed, root=root)
        except ProofError:
            pass
        try:
            root_from_inclusion_proof(leaf=leaf, index=at, size=size, proof=changed)
        except ProofError:
            pass
        last = inclusion_proof(tree.nodes, tree.size - 1, tree.size)
        frontier_size = data.draw(st.one_of(st.just(tree.size), awkward_integers), label="frontier size")
        try:
            frontier = frontier_from_last_leaf(
                leaf=leaf, size=frontier_size, proof=data.draw(proof_lists(last), label="last proof"), root=root
            )
        except ProofError:
            return
        assert frontier.root() == root

    run()


@pytest.mark.parametrize("examples", RUNS)
def test_consistency_proofs_raise_only_proof_errors(examples: int) -> None:
    @fuzz(examples)
    @given(data=st.data(), tree=st.sampled_from(list(TREES.values())))
    def run(data: st.DataObject, tree: Tree) -> None:
        old = data.draw(st.integers(1, tree.size), label="old")
        proof = consistency_proof(tree.nodes, old, tree.size)
        verify_consistency(old_size=old, new_size=tree.size, old_root=tree.root(old), new_root=tree.root(), proof=proof)
        try:
            verify_consistency(
                old_size=data.draw(st.one_of(st.just(old), index_like), label="old size"),
                new_size=data.draw(st.one_of(st.just(tree.size), index_like), label="new size"),
                old_root=data.draw(st.one_of(st.just(tree.root(old)), hash_like), label="old root"),
                new_root=data.draw(st.one_of(st.just(tree.root()), hash_like), label="new root"),
                proof=data.draw(proof_lists(proof), label="proof"),
            )
        except ProofError:
            pass

    run()


# --- certificates ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    """A retirement and a claim certificate from the full story, and every entry of its log."""

    retirement: bytes
    claim: bytes
    leaves: list[bytes]


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """Built once, on SQLite: the bytes are the same whatever the database."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'registry.db'}")
    try:
        schema.upgrade(engine)
        story = Ledger(engine, log_signer())
        found_registry(
            story, authority_id=AUTHORITY, authority_name=AUTHORITY_NAME, authority_key=seeded_key(AUTHORITY)
        )
        Story(story).full_story()
        return Certificates(build(story, "retirement", "RT000001"), build(story, "claim", "CN0001"), log_leaves(story))
    finally:
        engine.dispose()


@st.composite
def forged_certificates(draw: st.DrawFn, certificate: bytes, leaves: list[bytes]) -> bytes:
    """The certificate over a log with one of its entries mutated, re-sealed under the registry's own key.

    The checkpoint and the inclusion proofs then verify, so the mutation reaches the entry and statement checks.
    """
    bundle = json.loads(certificate)
    index = draw(st.sampled_from([item["index"] for item in bundle["entries"]]))
    forged = list(leaves)
    forged[index] = draw(st.one_of(mutations(leaves[index]), json_documents(json.loads(leaves[index]))))
    return json.dumps(reseal(bundle, forged)).encode()


@pytest.mark.parametrize("examples", SLOW_RUNS)
def test_certificates_raise_only_certificate_errors(certificates: Certificates, examples: int) -> None:
    seeds = (certificates.retirement, certificates.claim)
    for data in seeds:
        assert parse_certificate(data).to_bytes() == data
        assert verify_certificate(data, VKEY).origin == ORIGIN

    @fuzz(examples)
    @given(
        data=st.one_of(
            st.binary(max_size=512),
            st.sampled_from(seeds).flatmap(mutations),
            st.sampled_from(seeds).flatmap(lambda seed: json_like(json.loads(seed))),
            st.sampled_from(seeds).flatmap(lambda seed: forged_certificates(seed, certificates.leaves)),
        ),
        vkey=st.one_of(st.just(VKEY), st.just(VKEY + "\n"), text_like(VKEY)),
    )
    def run(data: bytes, vkey: str) -> None:
        try:
            certificate = parse_certificate(data)
        except CertificateError:
            return
        assert parse_certificate(certificate.to_bytes()) == certificate
        try:
            verified = verify_certificate(data, vkey)
        except CertificateError:
            return
        assert verified.id == certificate.id

    run()


# --- key files ---------------------------------------------------------------------------------------------

KEY = seeded_key("fuzzed key file")
PASSPHRASE = "correct horse battery staple"
PLAIN_KEY_FILE = encode_key_file(KEY, passphrase=None, label="plain 碳 key")
# The cheapest Argon2id libsodium allows, so that each example that reaches the KDF costs little.
with mock.patch.dict(ledger.keys._KDF_LIMITS, {"interactive": (argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)}):
    ENCRYPTED_KEY_FILE = encode_key_file(KEY, passphrase=PASSPHRASE, label="encrypted", kdf_profile="interactive")


@pytest.fixture
def small_kdf_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mutated file may ask for up to 1 GiB of Argon2id memory; refuse more than 1 MiB, the same way."""
    monkeypatch.setattr(ledger.keys, "_MAX_MEMLIMIT", 1 << 20)


@pytest.mark.usefixtures("small_kdf_bound")
@pytest.mark.parametrize("examples", RUNS)
def test_key_files_raise_only_key_file_errors(examples: int) -> None:
    assert decode_key_file(PLAIN_KEY_FILE, passphrase=None).seed == KEY.seed
    assert decode_key_file(ENCRYPTED_KEY_FILE, passphrase=PASSPHRASE).seed == KEY.seed

    @fuzz(examples)
    @given(
        data=st.one_of(
            anything_like(PLAIN_KEY_FILE, ENCRYPTED_KEY_FILE),
            json_like(json.loads(PLAIN_KEY_FILE)),
            json_like(json.loads(ENCRYPTED_KEY_FILE)),
        ),
        passphrase=st.one_of(st.none(), st.just(PASSPHRASE), st.text(max_size=8), st.sampled_from(SURROGATES)),
    )
    def run(data: bytes, passphrase: str | None) -> None:
        try:
            public_key = read_public_key(data)
        except KeyFileError:
            public_key = None
        try:
            key = decode_key_file(data, passphrase=passphrase)
        except KeyFileError:
            return
        assert key.public_key == public_key

    run()


@pytest.mark.usefixtures("small_kdf_bound")
@pytest.mark.parametrize("examples", SLOW_RUNS)
def test_key_files_read_from_disk_raise_only_key_file_errors(tmp_path: Path, examples: int) -> None:
    path = tmp_path / "participant.key"

    @fuzz(examples)
    @given(data=anything_like(PLAIN_KEY_FILE, ENCRYPTED_KEY_FILE), encrypted=st.booleans())
    def run(data: bytes, encrypted: bool) -> None:
        path.write_bytes(data)
        try:
            read_key_file(path, passphrase=PASSPHRASE if encrypted else None)
        except KeyFileError:
            return

    run()


@pytest.mark.parametrize("examples", RUNS)
def test_public_keys_raise_only_encoding_errors(examples: int) -> None:
    assert PublicKey.from_b64(KEY.public_key.b64()) == KEY.public_key

    @fuzz(examples)
    @given(text=text_like(KEY.public_key.b64()))
    def run(text: str) -> None:
        try:
            PublicKey.from_b64(text)
        except EncodingError:
            return

    run()


def _external_key_files() -> dict[str, bytes]:
    """The same Ed25519 key as PKCS#8 PEM (plain and encrypted) and as an OpenSSH private key."""
    key = Ed25519PrivateKey.from_private_bytes(KEY.seed)
    encrypted = serialization.BestAvailableEncryption(PASSPHRASE.encode())  # PBKDF2, 2048 rounds: cheap
    pem, raw = serialization.Encoding.PEM, serialization.PrivateFormat.Raw
    return {
        "pkcs8": key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        "pkcs8 encrypted": key.private_bytes(pem, serialization.PrivateFormat.PKCS8, encrypted),
        "openssh": key.private_bytes(pem, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()),
        "public": key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo),
        "raw": key.private_bytes(serialization.Encoding.Raw, raw, serialization.NoEncryption()),
    }


@pytest.fixture
def import_passphrases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDCER_EXTERNAL_KEY_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("CDCER_KEY_PASSPHRASE", PASSPHRASE)


@pytest.mark.usefixtures("small_kdf_bound", "import_passphrases")
@pytest.mark.parametrize("examples", SLOW_RUNS)
def test_key_imports_end_in_a_key_or_a_usage_error(tmp_path: Path, examples: int) -> None:
    """``cdcer keys import`` reads PKCS#8, OpenSSH and cdcer key files; what it cannot read is a usage error."""
    external = _external_key_files()
    seeds = (external["pkcs8"], external["pkcs8 encrypted"], external["openssh"], PLAIN_KEY_FILE, ENCRYPTED_KEY_FILE)
    path = tmp_path / "import.key"
    for data in seeds:
        path.write_bytes(data)
        assert _load_any(path)[0].seed == KEY.seed

    @fuzz(examples)
    @given(data=st.one_of(anything_like(*seeds, external["public"], external["raw"])))
    def run(data: bytes) -> None:
        path.write_bytes(data)
        try:
            _load_any(path)
        except typer.Exit as exc:
            refused = exc
        else:
            return
        assert refused.exit_code == 2  # a usage error, said in one line, never a traceback

    run()


# --- serial blocks -----------------------------------------------------------------------------------------

BLOCK = "CDCER-P0001-2023-001-000001-000500"
SERIAL = "CDCER-P0001-2023-001-000042"


@pytest.mark.parametrize("examples", RUNS)
def test_serial_blocks_raise_only_encoding_errors(examples: int) -> None:
    assert str(parse_block(BLOCK)) == BLOCK
    assert parse_serial(SERIAL) == ("P0001-2023-001", 42)

    @fuzz(examples)
    @given(text=text_like(BLOCK, SERIAL, "CDCER-P000000000001-9999-999999-999999999999999-999999999999999"))
    def run(text: str) -> None:
        try:
            assert str(parse_block(text)) == text  # only the one canonical spelling is accepted
        except EncodingError:
            pass
        try:
            batch, serial = parse_serial(text)
        except EncodingError:
            return
        assert f"CDCER-{batch}-{serial:06d}" == text

    run()


# --- the registry's page cursors --------------------------------------------------------------------------

CURSOR_KEYS: list[tuple[list[Any], list[type]]] = [
    (["P0001"], [str]),
    (["CDCER-PV", "1.0"], [str, str]),
    ([16, "P0001-2023-001", 1], [int, str, int]),  # an account's history
    (["P0001-2023-001", 11], [str, int]),  # an account's holdings
]


@pytest.mark.parametrize("examples", SLOW_RUNS)
def test_page_cursors_raise_only_bad_requests(examples: int) -> None:
    """A cursor is base64url JSON the client sends back: anything else it sends is a 400, never a 500."""
    for key, types in CURSOR_KEYS:
        assert decode_key(encode_cursor(key), types) == key

    def as_cursor(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    @fuzz(examples)
    @given(
        data=st.data(),
        case=st.sampled_from(CURSOR_KEYS),
    )
    def run(data: st.DataObject, case: tuple[list[Any], list[type]]) -> None:
        key, types = case
        cursor = data.draw(
            st.one_of(
                text_like(encode_cursor(key)),
                json_like(key).map(as_cursor),
                st.binary(max_size=64).map(as_cursor),
            )
        )
        try:
            decoded = decode_key(cursor, types)
        except BadRequest:
            return
        assert [type(value) for value in decoded] == types
        assert all(-(2**63) <= value < 2**63 for value in decoded if isinstance(value, int))

    run()


# --- every parser at once, on one input -----------------------------------------------------------------


def _all_parsers(data: bytes) -> Iterator[Callable[[], object]]:
    text = data.decode("utf-8", "surrogateescape")
    yield lambda: parse_note(data)
    yield lambda: open_note(data, NOTE_VERIFIERS)
    yield lambda: open_checkpoint(data, REGISTRY.verifier())
    yield lambda: parse_signature_line(text)
    yield lambda: parse_verifier_key(text)
    yield lambda: parse_checkpoint_body(text)
    yield lambda: decode_body(data)
    yield lambda: decode_entry(data)
    yield lambda: parse_certificate(data)
    yield lambda: verify_certificate(data, VKEY)
    yield lambda: read_public_key(data)
    yield lambda: decode_key_file(data, passphrase=None)
    yield lambda: parse_block(text)
    yield lambda: loads_strict(data)


@pytest.mark.parametrize("examples", RUNS)
def test_every_parser_refuses_any_other_format_with_a_domain_error(examples: int) -> None:
    """Each format fed to every other parser: a checkpoint where a key file belongs, and so on."""
    inputs = (*NOTES, PLAIN_KEY_FILE, ENCRYPTED_KEY_FILE, *(tx.body_bytes for tx in TRANSACTIONS[:3]))

    @fuzz(examples)
    @given(data=anything_like(*inputs, *(entry.encode() for entry in ENTRIES[:3])))
    def run(data: bytes) -> None:
        for parse in _all_parsers(data):
            try:
                parse()
            except LedgerError:
                continue

    run()


# --- what the fuzzing found, kept as fixed examples ------------------------------------------------------


def test_a_key_file_nested_thousands_deep_is_a_key_file_error() -> None:
    # Was a RecursionError out of json.loads in `ledger.keys._parse`.
    for data in (b"[" * 20_000 + b"]" * 20_000, b'{"format":' * 5000 + b"0" + b"}" * 5000):
        with pytest.raises(KeyFileError, match="nested too deeply"):
            read_public_key(data)
        with pytest.raises(KeyFileError, match="nested too deeply"):
            decode_key_file(data, passphrase=None)


@pytest.mark.parametrize(
    ("data", "types"),
    [
        # Was a RecursionError out of json.loads (a 500 from every paged list): arrays nested thousands deep.
        pytest.param(b"[" * 5000 + b"]" * 5000, [str], id="nested"),
        # Were an OverflowError from SQLite (a 500; a 422 on PostgreSQL): integers beyond BIGINT.
        pytest.param(b'[9223372036854775808, "P0001-2023-001", 1]', [int, str, int], id="history-entry"),
        pytest.param(b'[16, "P0001-2023-001", -9223372036854775809]', [int, str, int], id="history-serial"),
        pytest.param(b'["P0001-2023-001", 1000000000000000000000000000000]', [str, int], id="holdings-serial"),
    ],
)
def test_cursors_the_registry_cannot_have_handed_out_are_bad_requests(data: bytes, types: list[type]) -> None:
    with pytest.raises(BadRequest, match="is not a cursor of this list"):
        decode_key(base64.urlsafe_b64encode(data).decode(), types)
