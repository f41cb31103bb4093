"""`cdcer keys` through Typer's CliRunner, with real key files and real OpenSSL and ssh-keygen interop.

Keys made by `openssl genpkey` and `ssh-keygen` are imported and sign a transaction that verifies with
the public key those tools print; keys exported by cdcer are read back by the same tools.
"""

from __future__ import annotations

import base64
import json
import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.keys import EXTERNAL_KEY_PASSPHRASE, KEY_PASSPHRASE, NEW_KEY_PASSPHRASE, _have_bcrypt
from cli.main import app
from ledger.errors import KeyFileError
from ledger.keys import PrivateKey, PublicKey, read_key_file
from ledger.note import NoteVerifier
from ledger.transactions import Selection, TransactionSigner, Transfer, signing_message
from tests.ledger.scenario import ORIGIN

PASSPHRASE = "correct horse battery staple"
EXTERNAL = "tr0ub4dor&3"


def run(*args: str, **env: str) -> tuple[int, str, str]:
    """Run `cdcer` with only the passphrase variables given here set."""
    variables: dict[str, str | None] = {KEY_PASSPHRASE: None, NEW_KEY_PASSPHRASE: None, EXTERNAL_KEY_PASSPHRASE: None}
    variables.update(env)
    result = CliRunner().invoke(app, list(args), env=variables)
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(err: str, *fragments: str) -> None:
    assert err.startswith("error: "), err
    assert err.strip().count("\n") == 0, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def tool(*args: str) -> bytes:
    return subprocess.run(args, check=True, capture_output=True).stdout


def openssl_public_key(pem: Path, *passin: str) -> PublicKey:
    """The raw public key as OpenSSL prints it (the last 32 bytes of its SubjectPublicKeyInfo DER)."""
    der = tool("openssl", "pkey", "-in", str(pem), *passin, "-pubout", "-outform", "DER")
    return PublicKey(der[-32:])


def ssh_public_key(line: bytes) -> PublicKey:
    """The raw public key of an ``ssh-ed25519 <base64> comment`` line (its wire blob ends with it)."""
    kind, blob = line.split()[:2]
    assert kind == b"ssh-ed25519"
    return PublicKey(base64.b64decode(blob)[-32:])


def signs_verifiably(key: PrivateKey, public_key: PublicKey) -> None:
    """A transaction signed with `key` verifies with `public_key` (and not with another key)."""
    tx = TransactionSigner(ORIGIN, "buyer", key).sign(
        Transfer(to="organiser", selection=Selection(quantity=5)), at=datetime(2026, 1, 2, tzinfo=UTC)
    )
    tx.verify(public_key)
    assert tx.body.key_id == public_key.key_id


def generate(path: Path, *extra: str) -> dict[str, object]:
    code, out, err = run("keys", "generate", str(path), "--json", *extra, CDCER_KEY_PASSPHRASE=PASSPHRASE)
    assert code == 0, err
    result: dict[str, object] = json.loads(out)
    return result


# --- generate -------------------------------------------------------------------------------------


def test_generate_writes_an_encrypted_owner_only_key_file(tmp_path: Path) -> None:
    path = tmp_path / "alice.key"
    result = generate(path, "--label", "alice", "--name", "alice.example/witness")

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = read_key_file(path, passphrase=PASSPHRASE)
    assert result["key_id"] == key.key_id
    assert result["public_key"] == key.public_key.b64()
    assert (result["label"], result["encrypted"]) == ("alice", True)
    verifier = NoteVerifier.from_vkey(str(result["verifier_key"]))
    assert (verifier.name, verifier.public_key) == ("alice.example/witness", key.public_key.raw)
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        read_key_file(path, passphrase="not it")
    with pytest.raises(KeyFileError, match="is encrypted"):
        read_key_file(path, passphrase=None)


def test_generate_human_output_names_the_key(tmp_path: Path) -> None:
    code, out, err = run("keys", "generate", str(tmp_path / "k.key"), CDCER_KEY_PASSPHRASE=PASSPHRASE)
    assert code == 0, err
    key = read_key_file(tmp_path / "k.key", passphrase=PASSPHRASE)
    assert f"key id:       {key.key_id}" in out
    assert key.public_key.b64() in out
    assert "wrote" in err


def test_generate_plain_is_readable_without_a_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "dev.key"
    code, out, err = run("keys", "generate", str(path), "--plain", "--json")
    assert code == 0, err
    assert json.loads(out)["encrypted"] is False
    assert read_key_file(path, passphrase=None).key_id == json.loads(out)["key_id"]


def test_generate_without_a_passphrase_or_terminal_refuses_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    code, out, err = run("keys", "generate", str(path))
    assert code == 2
    assert out == ""
    assert_one_line_error(err, KEY_PASSPHRASE, "--plain")
    assert not path.exists()


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    path.write_text("precious")
    code, _, err = run("keys", "generate", str(path), CDCER_KEY_PASSPHRASE=PASSPHRASE)
    assert code == 2
    assert_one_line_error(err, "already exists")
    assert path.read_text() == "precious"


@pytest.mark.parametrize("name", ["has space", "a+b", ""])
def test_generate_refuses_a_bad_verifier_key_name(tmp_path: Path, name: str) -> None:
    code, _, err = run("keys", "generate", str(tmp_path / "k.key"), "--name", name, CDCER_KEY_PASSPHRASE=PASSPHRASE)
    assert code == 2
    assert_one_line_error(err, "--name")
    assert not (tmp_path / "k.key").exists()


# --- show -----------------------------------------------------------------------------------------


def test_show_reads_an_encrypted_file_without_its_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "alice.key"
    generated = generate(path, "--label", "alice")

    code, out, err = run("keys", "show", str(path), "--json", "--name", "alice.example")
    assert code == 0, err
    shown = json.loads(out)
    for field in ("key_id", "public_key", "label", "encrypted"):
        assert shown[field] == generated[field]
    assert NoteVerifier.from_vkey(shown["verifier_key"]).name == "alice.example"

    code, out, _ = run("keys", "show", str(path))
    assert code == 0
    assert f"key id:       {generated['key_id']}" in out
    assert "encrypted:    yes" in out


def test_show_refuses_bad_files_in_one_line(tmp_path: Path) -> None:
    code, _, err = run("keys", "show", str(tmp_path / "missing.key"))
    assert code == 2
    assert_one_line_error(err, "not found")

    garbage = tmp_path / "garbage.key"
    garbage.write_bytes(b"\x00\xffnot json")
    code, _, err = run("keys", "show", str(garbage))
    assert code == 2
    assert_one_line_error(err, "not UTF-8")

    path = tmp_path / "k.key"
    generate(path)
    document = json.loads(path.read_text())
    document["key_id"] = "0" * 16
    path.write_text(json.dumps(document))
    code, _, err = run("keys", "show", str(path))
    assert code == 2
    assert_one_line_error(err, "public key mismatch")

    code, _, err = run("keys", "show", str(tmp_path))
    assert code == 2
    assert_one_line_error(err, "cannot read key file")


# --- passwd ---------------------------------------------------------------------------------------


def test_passwd_changes_the_passphrase_and_keeps_the_key(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    generate(path, "--label", "alice")
    key = read_key_file(path, passphrase=PASSPHRASE)

    code, out, err = run(
        "keys", "passwd", str(path), CDCER_KEY_PASSPHRASE=PASSPHRASE, CDCER_NEW_KEY_PASSPHRASE="a new one"
    )
    assert code == 0, err
    assert "passphrase changed" in err
    assert read_key_file(path, passphrase="a new one").seed == key.seed
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        read_key_file(path, passphrase=PASSPHRASE)
    assert json.loads(path.read_text())["label"] == "alice"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.key"]  # no temporary file left behind

    code, _, err = run("keys", "passwd", str(path), "--plain", CDCER_KEY_PASSPHRASE="a new one")
    assert code == 0, err
    assert read_key_file(path, passphrase=None).seed == key.seed

    code, _, err = run("keys", "passwd", str(path), CDCER_NEW_KEY_PASSPHRASE=PASSPHRASE)
    assert code == 0, err  # a plain file needs no old passphrase
    assert read_key_file(path, passphrase=PASSPHRASE).seed == key.seed


def test_passwd_with_the_wrong_passphrase_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    generate(path)
    before = path.read_bytes()
    code, _, err = run("keys", "passwd", str(path), CDCER_KEY_PASSPHRASE="wrong", CDCER_NEW_KEY_PASSPHRASE="new")
    assert code == 2
    assert_one_line_error(err, "wrong passphrase")
    assert path.read_bytes() == before

    code, _, err = run("keys", "passwd", str(path), CDCER_KEY_PASSPHRASE=PASSPHRASE)
    assert code == 2
    assert_one_line_error(err, NEW_KEY_PASSPHRASE)
    assert path.read_bytes() == before


# --- import ---------------------------------------------------------------------------------------


def test_import_an_openssl_key_signs_what_its_openssl_public_key_verifies(tmp_path: Path) -> None:
    pem = tmp_path / "openssl.pem"
    tool("openssl", "genpkey", "-algorithm", "ed25519", "-out", str(pem))
    dest = tmp_path / "imported.key"

    code, out, err = run("keys", "import", str(pem), str(dest), "--json", CDCER_KEY_PASSPHRASE=PASSPHRASE)
    assert code == 0, err
    assert "PKCS#8 PEM" in err
    printed = openssl_public_key(pem)
    assert json.loads(out)["public_key"] == printed.b64()
    signs_verifiably(read_key_file(dest, passphrase=PASSPHRASE), printed)


def test_import_an_encrypted_openssl_key(tmp_path: Path) -> None:
    pem = tmp_path / "openssl.pem"
    tool("openssl", "genpkey", "-algorithm", "ed25519", "-aes-256-cbc", "-pass", f"pass:{EXTERNAL}", "-out", str(pem))
    assert pem.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    dest = tmp_path / "imported.key"

    code, _, err = run("keys", "import", str(pem), str(dest), "--plain", CDCER_EXTERNAL_KEY_PASSPHRASE="wrong")
    assert code == 2
    assert_one_line_error(err, "wrong passphrase")
    assert not dest.exists()

    code, _, err = run("keys", "import", str(pem), str(dest), "--plain")
    assert code == 2
    assert_one_line_error(err, EXTERNAL_KEY_PASSPHRASE)

    code, _, err = run("keys", "import", str(pem), str(dest), "--plain", CDCER_EXTERNAL_KEY_PASSPHRASE=EXTERNAL)
    assert code == 0, err
    signs_verifiably(read_key_file(dest, passphrase=None), openssl_public_key(pem, "-passin", f"pass:{EXTERNAL}"))


def test_import_an_ssh_keygen_key_signs_what_its_public_key_verifies(tmp_path: Path) -> None:
    private = tmp_path / "id_ed25519"
    tool("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@example", "-f", str(private))
    dest = tmp_path / "imported.key"

    code, out, err = run("keys", "import", str(private), str(dest), "--label", "alice", CDCER_KEY_PASSPHRASE=PASSPHRASE)
    assert code == 0, err
    assert "OpenSSH" in err
    printed = ssh_public_key((tmp_path / "id_ed25519.pub").read_bytes())
    assert printed.b64() in out
    signs_verifiably(read_key_file(dest, passphrase=PASSPHRASE), printed)


def test_import_a_passphrase_protected_ssh_key(tmp_path: Path) -> None:
    private = tmp_path / "id_ed25519"
    tool("ssh-keygen", "-q", "-t", "ed25519", "-N", EXTERNAL, "-f", str(private))
    dest = tmp_path / "imported.key"
    code, _, err = run("keys", "import", str(private), str(dest), "--plain", CDCER_EXTERNAL_KEY_PASSPHRASE=EXTERNAL)
    if _have_bcrypt():
        assert code == 0, err
        signs_verifiably(
            read_key_file(dest, passphrase=None), ssh_public_key((tmp_path / "id_ed25519.pub").read_bytes())
        )
    else:  # cryptography reads encrypted OpenSSH keys only with bcrypt, which is not a dependency
        assert code == 2
        assert_one_line_error(err, "passphrase-protected OpenSSH key", "bcrypt", "ssh-keygen -p")
        assert not dest.exists()


@pytest.mark.parametrize(
    ("command", "found"),
    [
        (("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "{file}"), "ECDSA"),
        (("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", "{file}"), "RSA-1024"),
        (("ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", "{file}"), "ECDSA"),
        (("openssl", "genpkey", "-algorithm", "ed448", "-out", "{file}"), "Ed448"),
    ],
)
def test_import_refuses_keys_that_are_not_ed25519(tmp_path: Path, command: tuple[str, ...], found: str) -> None:
    source = tmp_path / "other.key"
    tool(*(part.format(file=source) for part in command))
    code, out, err = run("keys", "import", str(source), str(tmp_path / "dest.key"), "--plain")
    assert code == 2
    assert out == ""
    assert_one_line_error(err, found, "Ed25519 only")
    assert not (tmp_path / "dest.key").exists()


def test_import_refuses_public_keys_and_garbage(tmp_path: Path) -> None:
    private = tmp_path / "id"
    tool("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(private))
    pem = tmp_path / "k.pem"
    tool("openssl", "genpkey", "-algorithm", "ed25519", "-out", str(pem))
    public_pem = tmp_path / "pub.pem"
    public_pem.write_bytes(tool("openssl", "pkey", "-in", str(pem), "-pubout"))
    for source in (tmp_path / "id.pub", public_pem):
        code, _, err = run("keys", "import", str(source), str(tmp_path / "dest.key"), "--plain")
        assert code == 2
        assert_one_line_error(err, "is a public key")

    garbage = tmp_path / "garbage"
    garbage.write_text("hello")
    code, _, err = run("keys", "import", str(garbage), str(tmp_path / "dest.key"), "--plain")
    assert code == 2
    assert_one_line_error(err, "not a recognised private key file")

    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    code, _, err = run("keys", "import", str(broken), str(tmp_path / "dest.key"), "--plain")
    assert code == 2
    assert_one_line_error(err, "not a valid PKCS#8 PEM private key")

    code, _, err = run("keys", "import", str(tmp_path / "missing"), str(tmp_path / "dest.key"), "--plain")
    assert code == 2
    assert_one_line_error(err, "not found")
    assert not (tmp_path / "dest.key").exists()


def test_import_refuses_to_overwrite(tmp_path: Path) -> None:
    pem = tmp_path / "k.pem"
    tool("openssl", "genpkey", "-algorithm", "ed25519", "-out", str(pem))
    dest = tmp_path / "dest.key"
    dest.write_text("precious")
    code, _, err = run("keys", "import", str(pem), str(dest), "--plain")
    assert code == 2
    assert_one_line_error(err, "already exists")
    assert dest.read_text() == "precious"


# --- export ---------------------------------------------------------------------------------------


def test_export_pkcs8_is_read_by_openssl_and_signs_for_the_key(tmp_path: Path) -> None:
    source = tmp_path / "k.key"
    generate(source)
    key = read_key_file(source, passphrase=PASSPHRASE)
    pem = tmp_path / "k.pem"

    code, _, err = run(
        "keys",
        "export",
        str(source),
        str(pem),
        "--format",
        "pkcs8",
        CDCER_KEY_PASSPHRASE=PASSPHRASE,
        CDCER_EXTERNAL_KEY_PASSPHRASE=EXTERNAL,
    )
    assert code == 0, err
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert pem.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    passin = ("-passin", f"pass:{EXTERNAL}")
    assert openssl_public_key(pem, *passin) == key.public_key

    # OpenSSL signs a transaction's signing message with the exported key; cdcer's public key verifies it.
    tx = TransactionSigner(ORIGIN, "buyer", key).sign(
        Transfer(to="organiser", selection=Selection(quantity=1)), at=datetime(2026, 1, 2, tzinfo=UTC)
    )
    message = tmp_path / "message"
    message.write_bytes(signing_message(tx.body_bytes))
    signature = tool("openssl", "pkeyutl", "-sign", "-inkey", str(pem), *passin, "-rawin", "-in", str(message))
    key.public_key.verify(signing_message(tx.body_bytes), signature)
    assert signature == tx.signature  # Ed25519 is deterministic

    # and it imports back to the same key
    code, _, err = run(
        "keys", "import", str(pem), str(tmp_path / "back.key"), "--plain", CDCER_EXTERNAL_KEY_PASSPHRASE=EXTERNAL
    )
    assert code == 0, err
    assert read_key_file(tmp_path / "back.key", passphrase=None).seed == key.seed


def test_export_plain_pkcs8_and_openssh_are_read_by_openssl_and_ssh_keygen(tmp_path: Path) -> None:
    source = tmp_path / "k.key"
    code, _, err = run("keys", "generate", str(source), "--plain")
    assert code == 0, err
    key = read_key_file(source, passphrase=None)

    code, _, err = run("keys", "export", str(source), str(tmp_path / "k.pem"), "--format", "pkcs8", "--plain")
    assert code == 0, err
    assert openssl_public_key(tmp_path / "k.pem") == key.public_key

    ssh = tmp_path / "id_ed25519"
    code, _, err = run("keys", "export", str(source), str(ssh), "--format", "openssh", "--plain")
    assert code == 0, err
    assert stat.S_IMODE(ssh.stat().st_mode) == 0o600
    assert ssh_public_key(tool("ssh-keygen", "-y", "-f", str(ssh))) == key.public_key


def test_export_errors(tmp_path: Path) -> None:
    source = tmp_path / "k.key"
    generate(source)
    dest = tmp_path / "out.pem"

    code, _, err = run("keys", "export", str(source), str(dest), "--format", "pkcs8", CDCER_KEY_PASSPHRASE="wrong")
    assert code == 2
    assert_one_line_error(err, "wrong passphrase")

    code, _, err = run("keys", "export", str(source), str(dest), "--format", "pkcs8", CDCER_KEY_PASSPHRASE=PASSPHRASE)
    assert code == 2
    assert_one_line_error(err, EXTERNAL_KEY_PASSPHRASE)
    assert not dest.exists()

    code, _, err = run("keys", "export", str(source), str(dest), "--format", "pem", "--plain")
    assert code == 2
    assert "Traceback" not in err

    code, _, err = run("keys", "export", str(source), str(source), "--format", "pkcs8", "--plain")
    assert code == 2
    assert_one_line_error(err, "already exists")

    if not _have_bcrypt():
        code, _, err = run(
            "keys",
            "export",
            str(source),
            str(dest),
            "--format",
            "openssh",
            CDCER_KEY_PASSPHRASE=PASSPHRASE,
            CDCER_EXTERNAL_KEY_PASSPHRASE=EXTERNAL,
        )
        assert code == 2
        assert_one_line_error(err, "bcrypt", "--plain")
        assert not dest.exists()
