"""Signed checkpoints: C2SP signed-note and tlog-checkpoint, checked against published vectors.

The PeterNeumann / EnochRoot keys, notes and signatures are the test vectors of Go's
golang.org/x/mod/sumdb/note, the reference implementation; matching them byte for byte shows that
Go tooling and govern read each other's notes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from govern.errors import ConfigError, ValidationError
from govern.ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointSignatureError,
    NoteSigner,
    NoteVerifier,
    SigningKeyError,
    VerifierKeyError,
    generate_key_file,
    is_valid_key_name,
    key_id,
    load_key_file,
    load_or_create_key_file,
    open_note,
    sign_checkpoint,
    sign_note,
    verifier_key,
    verify_checkpoint,
)
from govern.ledger.merkle import EMPTY_ROOT, MemoryNodeStore, MerkleLog

EM_DASH = "\u2014"

# golang.org/x/mod/sumdb/note test vectors.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    f"{EM_DASH} PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    f"{EM_DASH} EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)


def peter_signer() -> NoteSigner:
    # The Go signer key is base64(0x01 || 32-byte Ed25519 seed).
    seed = base64.b64decode(PETER_SKEY.split("+", 4)[4])[1:]
    return NoteSigner("PeterNeumann", Ed25519PrivateKey.from_private_bytes(seed))


@pytest.fixture
def signer(tmp_path: Path) -> NoteSigner:
    path = tmp_path / "keys" / "ledger.pem"
    generate_key_file(path)
    return NoteSigner.from_key_file("govern.example/ledger", path)


def sample_checkpoint(origin: str = "govern.example/ledger") -> Checkpoint:
    log = MerkleLog(MemoryNodeStore())
    log.append_many([f"entry {i}".encode() for i in range(5)])
    return Checkpoint(origin, log.size, log.root())


# --- known answers --------------------------------------------------------------------------------


def test_key_id_known_answer() -> None:
    signer = peter_signer()
    assert signer.key_id == bytes.fromhex("c74f20a3")
    assert signer.vkey == PETER_VKEY
    assert verifier_key("PeterNeumann", signer.public_key) == PETER_VKEY
    raw = signer.verifier.public_key_bytes
    # The definition, spelled out: SHA-256(name || 0x0A || 0x01 || key)[:4].
    assert key_id("PeterNeumann", raw) == hashlib.sha256(b"PeterNeumann\n\x01" + raw).digest()[:4]
    assert NoteVerifier.from_vkey(ENOCH_VKEY).key_id.hex() == "af0cfe78"


def test_sign_note_matches_go_byte_for_byte() -> None:
    assert sign_note(TEXT, peter_signer()) == TEXT + "\n" + PETER_SIG


def test_open_note_reads_go_notes() -> None:
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(note, PETER_VKEY) == TEXT
    # Enoch's signature was made by Go with a key we never held: a real interoperability check.
    assert open_note(note.encode(), NoteVerifier.from_vkey(ENOCH_VKEY)) == TEXT


def test_spec_examples_parse() -> None:
    # c2sp.org/tlog-checkpoint example body.
    body = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    checkpoint = Checkpoint.from_body(body)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.tree_size == 20852163
    assert checkpoint.body() == body
    # c2sp.org/signed-note example: its text has a blank line inside; it splits at the last one
    # and, signed by a key we do not trust, is refused for that reason, not as malformed.
    note = (
        "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n"
        "\ned \u00e8 subito sera.\n"
        f"\n{EM_DASH} quasimodo.example/salvatore "
        "NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
    )
    with pytest.raises(CheckpointSignatureError, match="no signature"):
        open_note(note, PETER_VKEY)


# --- round trip -----------------------------------------------------------------------------------


def test_round_trip(signer: NoteSigner) -> None:
    checkpoint = sample_checkpoint()
    note = sign_checkpoint(checkpoint, signer)
    body, signature_line = note.split("\n\n")
    assert body + "\n" == checkpoint.body()
    assert signature_line.startswith(f"{EM_DASH} govern.example/ledger ")
    assert verify_checkpoint(note, signer.vkey) == checkpoint
    assert verify_checkpoint(note.encode(), signer.verifier) == checkpoint
    raw = base64.b64decode(signature_line.split(" ")[2])
    assert raw[:4] == signer.key_id
    assert len(raw) == 4 + 64


def test_empty_tree_and_extension_lines_round_trip(signer: NoteSigner) -> None:
    for checkpoint in (
        Checkpoint("govern.example/ledger", 0, EMPTY_ROOT),
        Checkpoint("govern.example/ledger", 7, EMPTY_ROOT, ("ts 2026-11-23T12:00:00Z", "x")),
    ):
        assert verify_checkpoint(sign_checkpoint(checkpoint, signer), signer.vkey) == checkpoint


def test_every_flipped_bit_is_rejected(signer: NoteSigner) -> None:
    note = sign_checkpoint(sample_checkpoint(), signer).encode()
    for position in range(len(note)):
        for bit in range(8):
            tampered = bytearray(note)
            tampered[position] ^= 1 << bit
            with pytest.raises(CheckpointError):
                verify_checkpoint(bytes(tampered), signer.vkey)


def test_flipped_signature_bit_is_a_signature_error(signer: NoteSigner) -> None:
    note = sign_checkpoint(sample_checkpoint(), signer)
    body, line = note.split("\n\n")
    name_part, encoded = line.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[10] ^= 0x01  # inside the Ed25519 signature, after the key ID
    bad = f"{body}\n\n{name_part} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(CheckpointSignatureError, match="invalid signature"):
        verify_checkpoint(bad, signer.vkey)
    # A bad signature by the trusted key sinks the note even next to a good one.
    with pytest.raises(CheckpointSignatureError, match="invalid signature"):
        verify_checkpoint(note + bad.split("\n\n")[1], signer.vkey)


def test_changed_body_fails(signer: NoteSigner) -> None:
    note = sign_checkpoint(sample_checkpoint(), signer)
    lines = note.split("\n")
    lines[1] = str(int(lines[1]) + 1)  # claim a bigger tree
    with pytest.raises(CheckpointSignatureError):
        verify_checkpoint("\n".join(lines), signer.vkey)


def test_wrong_key_fails(signer: NoteSigner) -> None:
    note = sign_checkpoint(sample_checkpoint(), signer)
    same_name = NoteSigner(signer.name, Ed25519PrivateKey.generate())
    with pytest.raises(CheckpointSignatureError, match="no signature"):
        verify_checkpoint(note, same_name.vkey)
    other_name = NoteSigner("other.example/log", signer.private_key)
    with pytest.raises(CheckpointSignatureError, match="no signature"):
        verify_checkpoint(note, other_name.vkey)


def test_other_signers_are_ignored(signer: NoteSigner) -> None:
    note = sign_checkpoint(sample_checkpoint(), signer)
    witness = NoteSigner("witness.example", Ed25519PrivateKey.generate())
    cosigned = note + sign_note(sample_checkpoint().body(), witness).split("\n\n")[1]
    assert verify_checkpoint(cosigned, signer.vkey) == sample_checkpoint()
    # A line claiming the trusted name with a foreign key ID is not the trusted key: ignored.
    forged = f"{EM_DASH} {signer.name} {base64.b64encode(b'abcd' + bytes(64)).decode()}\n"
    assert verify_checkpoint(note + forged, signer.vkey) == sample_checkpoint()
    with pytest.raises(CheckpointSignatureError):
        verify_checkpoint(note.split("\n\n")[0] + "\n\n" + forged, signer.vkey)


def test_origin_must_be_the_expected_one(signer: NoteSigner) -> None:
    with pytest.raises(ValidationError, match="differs from checkpoint origin"):
        sign_checkpoint(sample_checkpoint("another.example/log"), signer)
    # A note whose body names another origin, signed directly at the note level:
    foreign = sample_checkpoint("another.example/log")
    note = sign_note(foreign.body(), signer)
    with pytest.raises(CheckpointError, match="origin"):
        verify_checkpoint(note, signer.vkey)
    assert verify_checkpoint(note, signer.vkey, origin="another.example/log") == foreign


# --- malformed notes, bodies and keys -------------------------------------------------------------


@pytest.mark.parametrize(
    "note",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        "\t" + TEXT + "\n" + PETER_SIG,
        TEXT + "\n" + f"{EM_DASH} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1F=",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + PETER_SIG.replace(EM_DASH, "--"),
        TEXT + "\n" + PETER_SIG.replace("=\n", "\n"),  # padding missing
        TEXT + "\n" + PETER_SIG.replace("AM=", "AN="),  # non-canonical padding bits
        TEXT + "\n" + f"{EM_DASH} PeterNeumann AAAA\n",  # shorter than key ID + 1 byte
        TEXT + "\n" + PETER_SIG * 101,
    ],
)
def test_malformed_notes(note: str) -> None:
    with pytest.raises(CheckpointError) as info:
        open_note(note, PETER_VKEY)
    assert type(info.value) is CheckpointError  # malformed, not merely unsigned


def test_invalid_utf8_note() -> None:
    with pytest.raises(CheckpointError, match="UTF-8"):
        open_note(b"\xff" + (TEXT + "\n" + PETER_SIG).encode(), PETER_VKEY)


def test_duplicate_good_signatures_are_accepted() -> None:
    assert open_note(TEXT + "\n" + PETER_SIG * 3, PETER_VKEY) == TEXT


@pytest.mark.parametrize(
    "body",
    [
        "origin\n5\n",
        "origin\n5\n" + base64.b64encode(bytes(32)).decode(),  # no final newline
        "\n5\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "origin\n05\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "origin\n+5\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "origin\n-1\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "origin\n 5\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "origin\n1_000\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "origin\n\u0665\n" + base64.b64encode(bytes(32)).decode() + "\n",  # Arabic-Indic five
        f"origin\n{2**64}\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "origin\n5\n" + base64.b64encode(bytes(31)).decode() + "\n",
        "origin\n5\nnot base64!\n",
        "origin\n5\n" + base64.b64encode(bytes(32)).decode()[:-2] + "B=\n",  # non-canonical
        "origin\n5\n" + base64.b64encode(bytes(32)).decode() + "\n\nextension\n",
    ],
)
def test_malformed_checkpoint_bodies(body: str) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.from_body(body)


def test_checkpoint_fields_are_validated() -> None:
    root = bytes(32)
    for args in [
        ("", 1, root),
        ("a\nb", 1, root),
        ("origin", -1, root),
        ("origin", 2**64, root),
        ("origin", True, root),
        ("origin", 1, bytes(31)),
        ("origin", 1, "00" * 32),
    ]:
        with pytest.raises(CheckpointError):
            Checkpoint(*args)  # type: ignore[arg-type]
    with pytest.raises(CheckpointError):
        Checkpoint("origin", 1, root, ("",))
    with pytest.raises(CheckpointError):
        Checkpoint("origin", 1, root, ["list, not tuple"])  # type: ignore[arg-type]


def test_verifier_key_manglings_are_refused() -> None:
    # Every proper substring and every single-character change of a good key must fail.
    NoteVerifier.from_vkey(PETER_VKEY)
    for i in range(len(PETER_VKEY) + 1):
        for j in range(i + 1, len(PETER_VKEY) + 1):
            if (i, j) != (0, len(PETER_VKEY)):
                with pytest.raises(VerifierKeyError):
                    NoteVerifier.from_vkey(PETER_VKEY[i:j])
    for i in range(len(PETER_VKEY)):
        changed = PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1 :]
        with pytest.raises(VerifierKeyError):
            NoteVerifier.from_vkey(changed)
    for bad in [
        # Wrong key length and unknown algorithm, each with a key ID that matches its data.
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+0xc74f20+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "",
    ]:
        with pytest.raises(VerifierKeyError):
            NoteVerifier.from_vkey(bad)


def test_upper_case_key_id_is_accepted() -> None:
    upper = PETER_VKEY.replace("c74f20a3", "C74F20A3")
    assert NoteVerifier.from_vkey(upper) == NoteVerifier.from_vkey(PETER_VKEY)
    assert NoteVerifier.from_vkey(upper).vkey == PETER_VKEY  # written back in lower case


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\u00a0b", "a\u2028b", "tab\there", "\ud800"])
def test_invalid_key_names(name: str) -> None:
    assert not is_valid_key_name(name)
    with pytest.raises(ValidationError):
        NoteSigner(name, Ed25519PrivateKey.generate())
    with pytest.raises(VerifierKeyError):
        key_id(name, bytes(32))


def test_sign_note_refuses_bad_text() -> None:
    for text in ["no newline", "control \x07 char\n"]:
        with pytest.raises(CheckpointError):
            sign_note(text, peter_signer())


# --- key files ------------------------------------------------------------------------------------


def test_generated_key_file_is_private_pkcs8_pem(tmp_path: Path) -> None:
    old_umask = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        key = generate_key_file(tmp_path / "k.pem")
    finally:
        os.umask(old_umask)
    mode = stat.S_IMODE((tmp_path / "k.pem").stat().st_mode)
    assert mode == 0o600
    assert (tmp_path / "k.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = load_key_file(tmp_path / "k.pem")
    assert NoteSigner("n", loaded).vkey == NoteSigner("n", key).vkey


def test_existing_key_is_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    generate_key_file(path)
    before = path.read_bytes()
    with pytest.raises(SigningKeyError, match="already exists"):
        generate_key_file(path)
    assert path.read_bytes() == before


def test_load_or_create(tmp_path: Path) -> None:
    path = tmp_path / "home" / "ledger.pem"
    first = load_or_create_key_file(path)
    second = load_or_create_key_file(path)
    assert NoteSigner("n", first).vkey == NoteSigner("n", second).vkey


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k.pem"
    generate_key_file(path)
    path.chmod(mode)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        load_key_file(path)


def write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def test_bad_key_files(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="does not exist"):
        load_key_file(tmp_path / "missing.pem")
    (tmp_path / "dir").mkdir(mode=0o700)
    with pytest.raises(SigningKeyError, match="not a regular file"):
        load_key_file(tmp_path / "dir")
    write_private(tmp_path / "junk.pem", b"not a key")
    with pytest.raises(SigningKeyError, match="not an unencrypted PEM"):
        load_key_file(tmp_path / "junk.pem")
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(tmp_path / "ec.pem", ec_pem)
    with pytest.raises(SigningKeyError, match="not Ed25519"):
        load_key_file(tmp_path / "ec.pem")
    assert issubclass(SigningKeyError, ConfigError)
