"""Where `cdcer audit` reads a log it does not run: a registry over HTTP, or a JSON Lines export file.

Both implement `ledger.audit.AuditSource` for the log alone: they hold no tree nodes, projections or
movements (those methods return None), and exactly one checkpoint, the latest signed one. The entries
are read up to that checkpoint's size only, so a log that grows while it is read is still audited as
one consistent snapshot.

An export is JSON Lines: line 1 ``{"checkpoint": "<signed note>"}``, then one line per entry,
``{"index": i, "leaf": b64, "leaf_hash": b64, "chain_hash": b64}``, in index order.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import httpx

from cli.console import plural
from ledger.audit import SourceCheckpoint
from ledger.checkpoint import Checkpoint, parse_checkpoint_body
from ledger.encoding import b64encode
from ledger.errors import NoteError
from ledger.log import StoredEntry
from ledger.merkle import Hash, NodeReader
from ledger.note import parse_note
from ledger.points_batch import PointRecord

PAGE = 1000
ENTRY_FIELDS = frozenset({"index", "leaf", "leaf_hash", "chain_hash"})


class SourceUnavailable(Exception):
    """The registry could not be reached or answered with an error (operational, exit 3)."""


class MalformedExport(Exception):
    """An export file line is not what `cdcer audit export` writes (integrity, exit 1)."""


def checkpoint_of(note: bytes) -> Checkpoint:
    """The checkpoint a signed note carries, parsed but NOT verified (the audit verifies the signature)."""
    return parse_checkpoint_body(parse_note(note).text)


def _canonical_b64(text: object, *, what: str) -> bytes:
    """Strict, canonical base64 (re-encoding gives the same text, so no two texts decode alike)."""
    if not isinstance(text, str):
        raise ValueError(f"{what}: expected a base64 string")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ValueError(f"{what}: not valid base64") from None
    if b64encode(data) != text:
        raise ValueError(f"{what}: not canonical base64")
    return data


def entry_to_json(entry: StoredEntry) -> dict[str, Any]:
    """One export line's object."""
    return {
        "index": entry.index,
        "leaf": b64encode(entry.data),
        "leaf_hash": b64encode(entry.leaf_hash),
        "chain_hash": b64encode(entry.chain_hash),
    }


def entry_from_json(value: object, *, what: str) -> StoredEntry:
    """Parse one entry object exactly (the fields `entry_to_json` writes, no more, no less)."""
    if not isinstance(value, dict) or set(value) != ENTRY_FIELDS:
        raise ValueError(f"{what}: expected an object with exactly {', '.join(sorted(ENTRY_FIELDS))}")
    index = value["index"]
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"{what}: index must be a non-negative integer")
    return StoredEntry(
        index=index,
        data=_canonical_b64(value["leaf"], what=f"{what}: leaf"),
        leaf_hash=_canonical_b64(value["leaf_hash"], what=f"{what}: leaf_hash"),
        chain_hash=_canonical_b64(value["chain_hash"], what=f"{what}: chain_hash"),
    )


class RegistryClient:
    """The public log endpoints of a registry (SPEC 5); every failure is a `SourceUnavailable`."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def _get(self, path: str, params: dict[str, int] | None = None) -> httpx.Response:
        try:
            response = self.http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"cannot reach {self.base_url}: {exc or type(exc).__name__}") from None
        if response.status_code != 200:
            detail = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
            raise SourceUnavailable(f"{self.base_url}{path}: HTTP {response.status_code} {detail}".rstrip())
        return response

    def _json(self, path: str, params: dict[str, int] | None = None) -> Any:
        try:
            return self._get(path, params).json()
        except ValueError:
            raise SourceUnavailable(f"{self.base_url}{path}: the answer is not JSON") from None

    def checkpoint(self) -> bytes:
        """The latest signed checkpoint note, byte-exact."""
        return self._get("/v1/log/checkpoint").content

    def entries(self, start: int, stop: int) -> Iterator[StoredEntry]:
        """Entries ``start <= index < stop``, fetched page by page."""
        index = start
        while index < stop:
            page = self._json("/v1/log/entries", {"start": index, "limit": min(PAGE, stop - index)})
            rows = page.get("entries") if isinstance(page, dict) else None
            if not isinstance(rows, list) or not rows:
                raise SourceUnavailable(f"{self.base_url}: no entries from {index} though the checkpoint has {stop}")
            for row in rows:
                try:
                    entry = entry_from_json(row, what=f"entry {index} from {self.base_url}")
                except ValueError as exc:
                    raise SourceUnavailable(str(exc)) from None
                yield entry
                index += 1
                if index >= stop:
                    return

    def inclusion(self, index: int, size: int) -> tuple[Hash, list[Hash]]:
        """The leaf hash of entry `index` and its inclusion proof in the tree of `size`."""
        body = self._json("/v1/log/proof/inclusion", {"index": index, "size": size})
        return Hash(self._b64(body.get("leaf_hash"))), [Hash(self._b64(h)) for h in body.get("hashes", [])]

    def consistency(self, old: int, new: int) -> list[Hash]:
        """The consistency proof from the tree of `old` entries to the tree of `new`."""
        body = self._json("/v1/log/proof/consistency", {"old": old, "new": new})
        return [Hash(self._b64(h)) for h in body.get("hashes", [])]

    def _b64(self, value: object) -> bytes:
        try:
            return _canonical_b64(value, what="proof hash")
        except ValueError as exc:
            raise SourceUnavailable(f"{self.base_url}: {exc}") from None


class RemoteSource:
    """An `AuditSource` over a registry's HTTP API: the latest checkpoint and the entries it covers."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self.note = client.checkpoint()
        try:
            self.checkpoint = checkpoint_of(self.note)
        except NoteError as exc:
            raise SourceUnavailable(f"{client.base_url}: the checkpoint does not parse: {exc}") from None

    def entries(self) -> Iterator[StoredEntry]:
        return self.client.entries(0, self.checkpoint.size)

    def checkpoints(self) -> Sequence[SourceCheckpoint]:
        return [SourceCheckpoint(self.checkpoint.size, self.checkpoint.root_hash, self.note)]

    def node_reader(self) -> NodeReader | None:
        return None

    def projection_rows(self, table: str) -> Iterator[dict[str, Any]] | None:
        return None

    def entry_index_rows(self) -> Iterator[dict[str, Any]] | None:
        return None  # a registry's database index is not served; only its entries are audited

    def registry_meta(self) -> Mapping[str, str] | None:
        return None

    holds_point_records = False  # private rows: not served to an anonymous audit, not in an export

    def point_records(self, batch_id: str, provider: str) -> Sequence[PointRecord] | None:
        return None

    def movement_rows(self) -> Iterator[dict[str, Any]] | None:
        return None


class ExportSource:
    """An `AuditSource` over an export file; a malformed line raises `MalformedExport` naming it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as handle:
            first = handle.readline()
        try:
            value = json.loads(first)
            if not isinstance(value, dict) or set(value) != {"checkpoint"} or not isinstance(value["checkpoint"], str):
                raise ValueError('expected {"checkpoint": "<signed note>"}')
            self.note = value["checkpoint"].encode("utf-8")
        except (ValueError, UnicodeError) as exc:
            raise MalformedExport(f"{path} line 1 (the checkpoint): {exc}") from None
        try:
            self.checkpoint = checkpoint_of(self.note)
        except NoteError as exc:
            raise MalformedExport(f"{path} line 1 (the checkpoint): {exc}") from None

    def entries(self) -> Iterator[StoredEntry]:
        with self.path.open("rb") as handle:
            handle.readline()
            yield from self._entries(handle)

    def _entries(self, handle: IO[bytes]) -> Iterator[StoredEntry]:
        for number, line in enumerate(handle, start=2):
            what = f"{self.path} line {number} (entry {number - 2})"
            if number - 2 >= self.checkpoint.size:
                raise MalformedExport(f"{what}: the checkpoint covers only {plural(self.checkpoint.size, 'entry')}")
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("the line does not end with a newline")
                yield entry_from_json(json.loads(line), what=what)
            except (ValueError, UnicodeError, RecursionError) as exc:
                message = str(exc) if str(exc).startswith(what) else f"{what}: {exc}"
                raise MalformedExport(message) from None

    def checkpoints(self) -> Sequence[SourceCheckpoint]:
        return [SourceCheckpoint(self.checkpoint.size, self.checkpoint.root_hash, self.note)]

    def node_reader(self) -> NodeReader | None:
        return None

    def projection_rows(self, table: str) -> Iterator[dict[str, Any]] | None:
        return None

    def entry_index_rows(self) -> Iterator[dict[str, Any]] | None:
        return None  # a registry's database index is not served; only its entries are audited

    def registry_meta(self) -> Mapping[str, str] | None:
        return None

    holds_point_records = False  # private rows: not served to an anonymous audit, not in an export

    def point_records(self, batch_id: str, provider: str) -> Sequence[PointRecord] | None:
        return None

    def movement_rows(self) -> Iterator[dict[str, Any]] | None:
        return None


def write_export(out: IO[str], note: bytes, entries: Iterator[StoredEntry]) -> int:
    """Write an export: the checkpoint line, then every entry; the number of entries written."""
    out.write(json.dumps({"checkpoint": note.decode("utf-8")}, separators=(",", ":")) + "\n")
    count = 0
    for entry in entries:
        out.write(json.dumps(entry_to_json(entry), separators=(",", ":")) + "\n")
        count += 1
    return count
