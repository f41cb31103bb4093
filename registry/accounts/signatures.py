"""HTTP Message Signatures (RFC 9421) with participants' Ed25519 keys, through `http_message_signatures`.

Private reads are not transactions: nothing is appended, so they are authenticated per request. The
client signs the request's method, authority and full target URI with one of its registered keys:

    Signature-Input: cdcer=("@method" "@authority" "@target-uri");created=1764000000;keyid="<key id>";
                     alg="ed25519";tag="cdcer"
    Signature: cdcer=:<base64 Ed25519 signature>:

``keyid`` is the participant key id the registry lists (16 hex digits). The registry accepts a
signature at most `MAX_AGE` old, by a key that is registered and not revoked, of an active participant.
Behind a reverse proxy, the proxy must pass the original Host header, since the authority is signed.

A request with a body (a points batch's records) also carries a ``Content-Digest`` (RFC 9530, ``sha-256``)
of its body, and its signature covers ``content-digest`` too, so the body cannot be swapped under it:

    Content-Digest: sha-256=:<base64 SHA-256 of the body>:
    Signature-Input: cdcer=("@method" "@authority" "@target-uri" "content-digest");created=...
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    algorithms,
)

from ledger.keys import PrivateKey

TAG = "cdcer"
LABEL = "cdcer"
COVERED = ("@method", "@authority", "@target-uri")
COVERED_WITH_BODY = (*COVERED, "content-digest")
MAX_AGE = datetime.timedelta(minutes=5)
# What a client that sent no signature is told to send (RFC 9421 section 5.1).
ACCEPT_SIGNATURE = f'{LABEL}=("@method" "@authority" "@target-uri");alg="ed25519";tag="{TAG}"'
ACCEPT_SIGNATURE_WITH_BODY = (
    f'{LABEL}=("@method" "@authority" "@target-uri" "content-digest");alg="ed25519";tag="{TAG}"'
)


class SignatureRefused(Exception):
    """The request carries no usable signature; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class SignedBy:
    """Who signed a verified request: the key id and its participant."""

    key_id: str
    participant_id: str


@dataclass(frozen=True, slots=True)
class RequestMessage:
    """The parts of an HTTP request that RFC 9421 signs (what the library reads from a message)."""

    method: str
    url: str
    headers: _Headers


class _Headers:
    """Field lines in order, as the library's component resolver reads them."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items = list(items)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)


class _OneKey(HTTPSignatureKeyResolver):
    def __init__(self, key_id: str, key: Ed25519PrivateKey) -> None:
        self._key_id = key_id
        self._key = key

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:
        if key_id != self._key_id:
            raise KeyError(key_id)
        return self._key


class _RegisteredKeys(HTTPSignatureKeyResolver):
    """Resolves a key id to its participant's registered, unrevoked public key (through `lookup`)."""

    def __init__(self, lookup: Callable[[str], tuple[str, bytes] | None]) -> None:
        self._lookup = lookup
        self.signer: SignedBy | None = None

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey | None:
        found = self._lookup(key_id)
        if found is None:
            return None
        participant_id, raw = found
        self.signer = SignedBy(key_id, participant_id)
        return Ed25519PublicKey.from_public_bytes(raw)


def sign_request(
    request: httpx.Request, key: PrivateKey, *, created: datetime.datetime | None = None, body: bytes | None = None
) -> None:
    """Sign `request` in place with a participant's key (adds Signature-Input and Signature).

    With `body` (the request's content), also add its ``Content-Digest`` (sha-256) and sign that as well.
    """
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=_OneKey(key.key_id, Ed25519PrivateKey.from_private_bytes(key.seed)),
    )
    signer.sign(
        request,
        key_id=key.key_id,
        created=created or datetime.datetime.now(datetime.UTC),
        label=LABEL,
        tag=TAG,
        covered_component_ids=COVERED,
        body=body,
    )


def verify_request(
    message: RequestMessage,
    lookup: Callable[[str], tuple[str, bytes] | None],
    *,
    max_age: datetime.timedelta = MAX_AGE,
    body: bytes | None = None,
) -> SignedBy:
    """The key and participant that signed `message`; `SignatureRefused` saying why otherwise.

    `lookup` maps a key id to (participant id, raw public key) for keys that may sign now, else None.
    With `body`, the request must also carry a sha-256 ``Content-Digest`` of exactly these bytes, and the
    signature must cover it.
    """
    headers = {name.lower(): value for name, value in message.headers.items()}
    if "signature" not in headers or "signature-input" not in headers:
        covered = " ".join(COVERED if body is None else COVERED_WITH_BODY)
        raise SignatureRefused(
            f"this request needs an HTTP message signature (RFC 9421): sign {covered} with your registered "
            f'Ed25519 key, keyid = your key id, tag "{TAG}"'
        )
    if body is not None and "sha-256=" not in headers.get("content-digest", "").replace(" ", ""):
        raise SignatureRefused(
            "a request with a body needs a Content-Digest header (RFC 9530) holding sha-256=:<base64 SHA-256 "
            "of the body>:, and its signature must cover content-digest"
        )
    keys = _RegisteredKeys(lookup)
    verifier = HTTPMessageVerifier(signature_algorithm=algorithms.ED25519, key_resolver=keys)
    required = COVERED if body is None else COVERED_WITH_BODY
    try:
        verifier.verify(message, max_age=max_age, expect_tag=TAG, require_components=required, body=body)
    except HTTPMessageSignaturesException as exc:
        raise SignatureRefused(f"the request's signature does not verify: {_reason(exc)}") from None
    except (ValueError, TypeError) as exc:  # a malformed key or field the library did not wrap
        raise SignatureRefused(f"the request's signature is malformed: {exc}") from None
    if keys.signer is None:  # the library verified without asking for a key: refuse rather than guess
        raise SignatureRefused("the request's signature names no registered key")
    return keys.signer


def _reason(exc: Exception) -> str:
    text = str(exc) or exc.__class__.__name__
    if text == "Unable to resolve verification key":
        return "its keyid is not a registered, unrevoked key of an active participant"
    return text


def message_of(method: str, url: str, headers: Iterable[tuple[str, str]]) -> RequestMessage:
    """A request as the verifier reads it."""
    return RequestMessage(method.upper(), url, _Headers(headers))
