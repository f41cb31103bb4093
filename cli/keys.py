"""`cdcer keys`: make, inspect, re-protect and convert participant key files (Ed25519).

A participant's key lives in a ``cdcer-key/v1`` file (see `ledger.keys`), encrypted by default. Keys made
elsewhere (OpenSSL, ssh-keygen, an organisation's key tooling) come in as PKCS#8 PEM or OpenSSH private
key files and go out the same way, through the `cryptography` package.

Passphrases come from environment variables, or from a hidden prompt when stdin is a terminal:
``CDCER_KEY_PASSPHRASE`` for the cdcer key file, ``CDCER_NEW_KEY_PASSPHRASE`` for the new passphrase of
``keys passwd``, ``CDCER_EXTERNAL_KEY_PASSPHRASE`` for a PEM or OpenSSH file read by ``import`` or written
by ``export``.
"""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cli.console import EXIT_OPERATIONAL, EXIT_USAGE, err, fail, json_option
from ledger.errors import KeyFileError, NoteError
from ledger.keys import PrivateKey, PublicKey, read_key_file, read_public_key, write_key_file
from ledger.note import SIG_TYPE_ED25519, check_key_name, format_verifier_key

KEY_PASSPHRASE = "CDCER_KEY_PASSPHRASE"
NEW_KEY_PASSPHRASE = "CDCER_NEW_KEY_PASSPHRASE"
EXTERNAL_KEY_PASSPHRASE = "CDCER_EXTERNAL_KEY_PASSPHRASE"

# Key files are small; anything much larger is something else, and is not read whole.
_MAX_READ = 64 * 1024

app = typer.Typer(help="Participant keys: generate, show, change passphrase, import and export.", no_args_is_help=True)


class ExportFormat(StrEnum):
    """The formats `keys export` writes."""

    PKCS8 = "pkcs8"
    OPENSSH = "openssh"


# --- commands ------------------------------------------------------------------------------------


@app.command("generate")
def generate(
    file: Annotated[Path, typer.Argument(help="Where to write the new key file (must not exist).")],
    label: Annotated[str, typer.Option(help="A label stored in the file, e.g. the participant id.")] = "",
    plain: Annotated[bool, typer.Option(help="Write the key unencrypted (development only).")] = False,
    name: Annotated[
        str | None, typer.Option(help="Also print the C2SP verifier-key string of this key under this name.")
    ] = None,
    as_json: Annotated[bool, json_option()] = False,
) -> None:
    """Generate a new Ed25519 key file, encrypted with a passphrase unless --plain."""
    _check_name(name)
    _refuse_existing(file)
    passphrase = None if plain else _ask(KEY_PASSPHRASE, f"the new key file {file}", confirm=True, plain_hint=True)
    key = PrivateKey.generate()
    _write_key(file, key, passphrase=passphrase, label=label)
    err.print(f"wrote {file} ({'plain, development only' if plain else 'encrypted'})", markup=False, highlight=False)
    _print_key(file, key.public_key, label=label, encrypted=not plain, name=name, as_json=as_json)


@app.command("show")
def show(
    file: Annotated[Path, typer.Argument(help="A cdcer key file.")],
    name: Annotated[
        str | None, typer.Option(help="Also print the C2SP verifier-key string of this key under this name.")
    ] = None,
    as_json: Annotated[bool, json_option()] = False,
) -> None:
    """Show a key file's public key and key id; no passphrase needed (they are stored in the clear)."""
    _check_name(name)
    public_key, header = _read_header(file)
    _print_key(
        file,
        public_key,
        label=header["label"],
        encrypted=header["encryption"] != "none",
        name=name,
        as_json=as_json,
    )


@app.command("passwd")
def passwd(
    file: Annotated[Path, typer.Argument(help="A cdcer key file.")],
    plain: Annotated[bool, typer.Option(help="Remove the passphrase (development only).")] = False,
) -> None:
    """Change a key file's passphrase (or remove it with --plain); the file is replaced atomically."""
    key, header = _load_key(file)
    passphrase = (
        None if plain else _ask(NEW_KEY_PASSPHRASE, f"the new passphrase of {file}", confirm=True, plain_hint=True)
    )
    _write_key(file, key, passphrase=passphrase, label=header["label"], overwrite=True)
    err.print(
        f"{file}: {'passphrase removed' if plain else 'passphrase changed'} (key {key.key_id})",
        markup=False,
        highlight=False,
    )


@app.command("import")
def import_key(
    source: Annotated[Path, typer.Argument(help="An Ed25519 private key: PKCS#8 PEM, OpenSSH, or cdcer key file.")],
    dest: Annotated[Path, typer.Argument(help="The cdcer key file to write (must not exist).")],
    label: Annotated[str, typer.Option(help="A label stored in the new file.")] = "",
    plain: Annotated[bool, typer.Option(help="Write the key unencrypted (development only).")] = False,
    as_json: Annotated[bool, json_option()] = False,
) -> None:
    """Import an Ed25519 key made by OpenSSL, ssh-keygen or other tooling into a cdcer key file."""
    _refuse_existing(dest)
    key, source_format = _load_any(source)
    passphrase = None if plain else _ask(KEY_PASSPHRASE, f"the new key file {dest}", confirm=True, plain_hint=True)
    _write_key(dest, key, passphrase=passphrase, label=label)
    err.print(f"imported {source} ({source_format}) into {dest}", markup=False, highlight=False)
    _print_key(dest, key.public_key, label=label, encrypted=not plain, name=None, as_json=as_json)


@app.command("export")
def export_key(
    source: Annotated[Path, typer.Argument(help="A cdcer key file.")],
    dest: Annotated[Path, typer.Argument(help="The file to write (must not exist).")],
    key_format: Annotated[ExportFormat, typer.Option("--format", help="PKCS#8 PEM or OpenSSH private key.")],
    plain: Annotated[bool, typer.Option(help="Write the exported key unencrypted.")] = False,
) -> None:
    """Export a cdcer key as a PKCS#8 PEM or OpenSSH private key file (mode 0600)."""
    _refuse_existing(dest)
    if key_format is ExportFormat.OPENSSH and not plain and not _have_bcrypt():
        fail(
            "encrypting an OpenSSH key file needs the bcrypt package, which is not installed; "
            "use --format pkcs8, or --plain",
            EXIT_USAGE,
        )
    key, _ = _load_key(source)
    if plain:
        encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    else:
        secret = _ask(EXTERNAL_KEY_PASSPHRASE, f"the exported key {dest}", confirm=True)
        encryption = serialization.BestAvailableEncryption(secret.encode("utf-8"))
    private_format = (
        serialization.PrivateFormat.PKCS8 if key_format is ExportFormat.PKCS8 else serialization.PrivateFormat.OpenSSH
    )
    data = Ed25519PrivateKey.from_private_bytes(key.seed).private_bytes(
        serialization.Encoding.PEM, private_format, encryption
    )
    try:
        _create_private_file(dest, data)
    except FileExistsError:
        fail(f"{dest} already exists; refusing to overwrite it", EXIT_USAGE)
    except OSError as exc:
        fail(f"cannot write {dest}: {exc.strerror or exc}", EXIT_OPERATIONAL)
    err.print(
        f"exported key {key.key_id} to {dest} ({key_format.value}, {'plain' if plain else 'encrypted'})",
        markup=False,
        highlight=False,
    )


# --- cdcer key files -----------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    try:
        with path.open("rb") as stream:
            return stream.read(_MAX_READ + 1)
    except FileNotFoundError:
        fail(f"key file {path} not found", EXIT_USAGE)
    except OSError as exc:
        fail(f"cannot read key file {path}: {exc.strerror or exc}", EXIT_USAGE)


def _read_header(path: Path) -> tuple[PublicKey, dict[str, Any]]:
    """The public key and the clear-text header of a cdcer key file, without the passphrase."""
    data = _read_bytes(path)
    try:
        public_key = read_public_key(data)
    except KeyFileError as exc:
        fail(f"{path}: {exc}", EXIT_USAGE)
    header: dict[str, Any] = json.loads(data)  # read_public_key has checked it is a key file's JSON object
    return public_key, header


def _load_key(path: Path) -> tuple[PrivateKey, dict[str, Any]]:
    """The private key of a cdcer key file, asking for its passphrase only if it is encrypted."""
    _, header = _read_header(path)
    passphrase = None if header["encryption"] == "none" else _ask(KEY_PASSPHRASE, f"key file {path}", confirm=False)
    try:
        return read_key_file(path, passphrase=passphrase), header
    except KeyFileError as exc:
        fail(str(exc), EXIT_USAGE)


def _write_key(path: Path, key: PrivateKey, *, passphrase: str | None, label: str, overwrite: bool = False) -> None:
    try:
        write_key_file(path, key, passphrase=passphrase, label=label, overwrite=overwrite)
    except KeyFileError as exc:
        # Bad labels and passphrases are the user's to fix; anything else is the file system's.
        code = EXIT_USAGE if str(exc).startswith(("label", "passphrase")) else EXIT_OPERATIONAL
        fail(str(exc), code)


def _refuse_existing(path: Path) -> None:
    if path.exists() or path.is_symlink():
        fail(f"{path} already exists; refusing to overwrite it", EXIT_USAGE)


# --- PKCS#8 and OpenSSH --------------------------------------------------------------------------


def _load_any(path: Path) -> tuple[PrivateKey, str]:
    """The Ed25519 key in a PKCS#8 PEM, OpenSSH or cdcer key file, and the name of the format found."""
    data = _read_bytes(path)
    head = data.lstrip()[:64]
    if head.startswith(b"{"):
        return _load_key(path)[0], "cdcer key file"
    if head.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"):
        return _load_openssh(path, data), "OpenSSH"
    if head.startswith((b"-----BEGIN PRIVATE KEY-----", b"-----BEGIN ENCRYPTED PRIVATE KEY-----")):
        return _load_pkcs8(path, data), "PKCS#8 PEM"
    if head.startswith((b"-----BEGIN PUBLIC KEY-----", b"ssh-", b"ecdsa-")):
        fail(f"{path} is a public key; importing needs the private key file", EXIT_USAGE)
    for kind in (b"RSA", b"EC", b"DSA"):
        if head.startswith(b"-----BEGIN " + kind + b" PRIVATE KEY-----"):
            _refuse_algorithm(path, f"an {kind.decode()}")
    fail(
        f"{path} is not a recognised private key file "
        "(expected PKCS#8 PEM, an OpenSSH private key, or a cdcer key file)",
        EXIT_USAGE,
    )


def _load_pkcs8(path: Path, data: bytes) -> PrivateKey:
    encrypted = data.lstrip().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    secret = _ask(EXTERNAL_KEY_PASSPHRASE, str(path), confirm=False).encode("utf-8") if encrypted else None
    try:
        key = serialization.load_pem_private_key(data, password=secret)
    except ValueError:
        if encrypted:
            fail(f"{path}: wrong passphrase, or not a valid encrypted PKCS#8 PEM key", EXIT_USAGE)
        fail(f"{path}: not a valid PKCS#8 PEM private key", EXIT_USAGE)
    except (TypeError, UnsupportedAlgorithm) as exc:
        fail(f"{path}: cannot read this PKCS#8 key: {exc}", EXIT_USAGE)
    return _ed25519(path, key)


def _load_openssh(path: Path, data: bytes) -> PrivateKey:
    try:
        key = serialization.load_ssh_private_key(data, password=None)
    except TypeError:  # passphrase-protected
        if not _have_bcrypt():
            fail(
                f"{path} is a passphrase-protected OpenSSH key, and reading it needs the bcrypt package, which is "
                f"not installed; remove the passphrase on a copy (ssh-keygen -p -N '' -f COPY) and import that",
                EXIT_USAGE,
            )
        secret = _ask(EXTERNAL_KEY_PASSPHRASE, str(path), confirm=False).encode("utf-8")
        try:
            key = serialization.load_ssh_private_key(data, password=secret)
        except ValueError:
            fail(f"{path}: wrong passphrase, or not a valid OpenSSH private key", EXIT_USAGE)
    except (ValueError, UnsupportedAlgorithm) as exc:
        fail(f"{path}: not a valid OpenSSH private key ({exc})", EXIT_USAGE)
    return _ed25519(path, key)


def _ed25519(path: Path, key: object) -> PrivateKey:
    if isinstance(key, Ed25519PrivateKey):
        return PrivateKey.from_seed(key.private_bytes_raw())
    if isinstance(key, rsa.RSAPrivateKey):
        _refuse_algorithm(path, f"an RSA-{key.key_size}")
    if isinstance(key, ec.EllipticCurvePrivateKey):
        _refuse_algorithm(path, f"an ECDSA {key.curve.name}")
    _refuse_algorithm(path, f"a {type(key).__name__.removeprefix('_')}")


def _refuse_algorithm(path: Path, what: str) -> NoReturn:
    fail(f"{path} holds {what} key; cdcer keys are Ed25519 only", EXIT_USAGE)


def _have_bcrypt() -> bool:
    try:
        import bcrypt  # type: ignore[import-not-found,unused-ignore]  # noqa: F401  # optional, for OpenSSH encryption
    except ImportError:
        return False
    return True


def _create_private_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)  # independent of the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


# --- shared --------------------------------------------------------------------------------------


def _ask(variable: str, what: str, *, confirm: bool, plain_hint: bool = False) -> str:
    """A passphrase from `variable`, or from a hidden prompt on a terminal; exit 2 when neither is there."""
    value = os.environ.get(variable)
    if value:
        return value
    if not sys.stdin.isatty():
        hint = ", or pass --plain (development only)" if plain_hint else ""
        fail(f"no passphrase for {what}: set {variable} or run in a terminal{hint}", EXIT_USAGE)
    return str(typer.prompt(f"passphrase for {what}", hide_input=True, confirmation_prompt=confirm, err=True))


def _check_name(name: str | None) -> None:
    if name is not None:
        try:
            check_key_name(name)
        except NoteError as exc:
            fail(f"--name: {exc}", EXIT_USAGE)


def _print_key(
    path: Path, public_key: PublicKey, *, label: str, encrypted: bool, name: str | None, as_json: bool
) -> None:
    result: dict[str, Any] = {
        "file": str(path),
        "label": label,
        "key_id": public_key.key_id,
        "public_key": public_key.b64(),
        "encrypted": encrypted,
    }
    if name is not None:
        result["verifier_key"] = format_verifier_key(name, SIG_TYPE_ED25519, public_key.raw)
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    for field, value in result.items():
        shown = ("yes" if value else "no") if isinstance(value, bool) else value
        typer.echo(f"{field.replace('_', ' ') + ':':<14}{shown}")
