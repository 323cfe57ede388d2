"""Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed notes, signed with Ed25519.

A checkpoint commits to the log's tree head. Its body (c2sp.org/tlog-checkpoint) is::

    <origin>\\n
    <tree size, decimal, no leading zeroes>\\n
    <base64 of the 32-byte RFC 6962 root hash>\\n
    [<extension line>\\n ...]

and the signed note (c2sp.org/signed-note) appends a blank line and one line per signature::

    \\u2014 <key name> <base64(4-byte key ID || 64-byte Ed25519 signature of the body)>\\n

where the key ID is ``SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]``. Verifier keys
are exchanged as ``<name>+<key ID hex>+<base64(0x01 || public key)>``, the format of Go's
``golang.org/x/mod/sumdb/note``, so Go tooling can check govern's checkpoints and vice versa.

The private key is an unencrypted PKCS#8 PEM file that only its owner may read (mode 0600); a
file readable by group or others is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from govern.errors import ConfigError, ValidationError

__all__ = [
    "ALG_ED25519",
    "Checkpoint",
    "CheckpointError",
    "CheckpointSignatureError",
    "NoteSigner",
    "NoteVerifier",
    "SigningKeyError",
    "VerifierKeyError",
    "generate_key_file",
    "is_valid_key_name",
    "key_id",
    "load_key_file",
    "load_or_create_key_file",
    "open_note",
    "sign_checkpoint",
    "sign_note",
    "verifier_key",
    "verify_checkpoint",
]

ALG_ED25519 = 0x01
"""Signature type byte of Ed25519 in c2sp.org/signed-note."""

_SIG_PREFIX = "\u2014 "  # em dash and space open every signature line
_MAX_SIGNATURES = 100  # Go's limit; the spec asks verifiers to accept at least 16
_MAX_NOTE_CHARS = 1 << 20  # bounds parsing work; real checkpoints are a few hundred bytes
_MAX_TREE_SIZE = 1 << 64
_HASH_SIZE = 32
_TREE_SIZE_RE = re.compile(r"0|[1-9][0-9]*")
_KEY_ID_RE = re.compile(r"[0-9a-fA-F]{8}")
# Control characters other than newline are banned from notes by the signed-note spec.
_CONTROL_RE = re.compile(r"[\x00-\x09\x0b-\x1f]")


class CheckpointError(ValidationError):
    """A note or checkpoint is malformed, or is not the checkpoint that was expected."""

    code = "checkpoint_invalid"


class CheckpointSignatureError(CheckpointError):
    """A note carries no valid signature by the trusted key."""

    code = "checkpoint_signature_invalid"


class VerifierKeyError(ValidationError):
    """A verifier key string or public key is malformed."""

    code = "verifier_key_invalid"


class SigningKeyError(ConfigError):
    """The signing key file is missing, unsafe or not an Ed25519 private key."""

    code = "signing_key_invalid"


# --- keys ---------------------------------------------------------------------------------------


def is_valid_key_name(name: str) -> bool:
    """Signed-note key names are non-empty and hold no Unicode space and no ``+``."""
    return (
        isinstance(name, str)
        and bool(name)
        and "+" not in name
        and not any(ch.isspace() for ch in name)
        and not _CONTROL_RE.search(name)
        and _is_utf8(name)
    )


def _is_utf8(text: str) -> bool:
    # A str may hold lone surrogates, which no UTF-8 note can carry.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, public_key: Ed25519PublicKey | bytes) -> bytes:
    """Signed-note key ID: ``SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4]``."""
    raw = public_key if isinstance(public_key, bytes) else _raw_public_key(public_key)
    if len(raw) != 32:
        raise VerifierKeyError(f"an Ed25519 public key is 32 bytes, not {len(raw)}")
    if not is_valid_key_name(name):
        raise VerifierKeyError(f"invalid key name {name!r}: empty, or has a space or '+'")
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + raw).digest()[:4]


def verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    """Verifier key string ``name+keyid_hex+base64(0x01 || public key)``."""
    return NoteVerifier.from_public_key(name, public_key).vkey


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted Ed25519 public key (32 raw bytes) with its key name; ``key_id`` is derived."""

    name: str
    public_key_bytes: bytes
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        # key_id() checks the name and the key length.
        object.__setattr__(self, "key_id", key_id(self.name, self.public_key_bytes))

    @classmethod
    def from_public_key(cls, name: str, public_key: Ed25519PublicKey) -> NoteVerifier:
        return cls(name, _raw_public_key(public_key))

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse ``name+keyid_hex+base64(0x01 || public key)``; the key ID must match."""
        if not isinstance(vkey, str):
            raise VerifierKeyError("a verifier key is a string")
        # Base64 may itself contain '+', so only the first two split the fields.
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise VerifierKeyError("verifier key must look like name+keyid+base64key")
        name, id_hex, key64 = parts
        if not is_valid_key_name(name):
            raise VerifierKeyError(f"invalid key name {name!r} in verifier key")
        if not _KEY_ID_RE.fullmatch(id_hex):
            raise VerifierKeyError("verifier key ID must be 8 hex digits")
        key = _b64decode(key64)
        if not key:
            raise VerifierKeyError("verifier key data is not base64")
        if key[0] != ALG_ED25519:
            raise VerifierKeyError(f"unsupported signature type {key[0]:#04x}; only Ed25519")
        verifier = cls(name, key[1:])
        if verifier.key_id != bytes.fromhex(id_hex):
            raise VerifierKeyError(
                f"verifier key ID {id_hex} does not match its name and key "
                f"({verifier.key_id.hex()})"
            )
        return verifier

    @property
    def public_key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.public_key_bytes)

    @property
    def vkey(self) -> str:
        encoded = base64.b64encode(bytes([ALG_ED25519]) + self.public_key_bytes)
        return f"{self.name}+{self.key_id.hex()}+{encoded.decode('ascii')}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``message``."""
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, eq=False)
class NoteSigner:
    """A private key and the name it signs under (for a log, its origin)."""

    name: str
    private_key: Ed25519PrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.name):
            raise ValidationError(f"invalid key name {self.name!r}: empty, or has a space or '+'")

    @classmethod
    def from_key_file(cls, name: str, path: str | os.PathLike[str]) -> NoteSigner:
        return cls(name, load_key_file(path))

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier.from_public_key(self.name, self.public_key)

    @property
    def vkey(self) -> str:
        return self.verifier.vkey


# --- key files ----------------------------------------------------------------------------------


def generate_key_file(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Create a new Ed25519 key as a PKCS#8 PEM file with mode 0600; never overwrite one."""
    target = Path(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # O_EXCL: an existing key is never replaced (losing it would orphan every checkpoint), and
    # the mode is set at creation so the secret is never readable by others, even briefly.
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise SigningKeyError(f"key file {target} already exists; refusing to replace it") from exc
    except OSError as exc:
        raise SigningKeyError(f"key file {target} cannot be created: {exc.strerror}") from exc
    try:
        os.fchmod(fd, 0o600)  # umask may only have narrowed it; make it exact
        with os.fdopen(fd, "wb", closefd=False) as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        os.close(fd)
        target.unlink(missing_ok=True)
        raise
    os.close(fd)
    return key


def load_key_file(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Load an Ed25519 private key from a PEM file only its owner can read."""
    target = Path(path)
    try:
        info = target.stat()
        if not stat.S_ISREG(info.st_mode):
            raise SigningKeyError(f"key file {target} is not a regular file")
        if info.st_mode & 0o077:
            raise SigningKeyError(
                f"key file {target} is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run chmod 600 on it"
            )
        data = target.read_bytes()
    except FileNotFoundError as exc:
        raise SigningKeyError(f"key file {target} does not exist") from exc
    except OSError as exc:
        raise SigningKeyError(f"key file {target} cannot be read: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        # The message of the underlying error may quote key material; keep it out.
        raise SigningKeyError(f"key file {target} is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"key file {target} holds a {type(key).__name__}, not Ed25519")
    return key


def load_or_create_key_file(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Load the key at ``path``, creating it first if there is none (first start)."""
    target = Path(path)
    if not target.exists():
        try:
            return generate_key_file(target)
        except SigningKeyError:
            # Lost a race with a concurrent first start: load the key that process wrote.
            if not target.exists():
                raise
    return load_key_file(target)


# --- signed notes -------------------------------------------------------------------------------


def _b64decode(text: str) -> bytes | None:
    """Standard base64 in its one canonical spelling, or None.

    Go's decoder also accepts non-zero padding bits; refusing them keeps a signed note's text
    non-malleable (no honest signer writes them).
    """
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if base64.b64encode(raw).decode("ascii") == text else None


def _check_note_chars(text: str, what: str) -> None:
    if not _is_utf8(text):
        raise CheckpointError(f"{what} is not valid UTF-8")
    if _CONTROL_RE.search(text):
        raise CheckpointError(f"{what} holds a control character other than newline")


def sign_note(text: str, signer: NoteSigner) -> str:
    """Sign ``text`` (which must end in a newline) and return the signed note."""
    if not text.endswith("\n"):
        raise CheckpointError("note text must end with a newline")
    _check_note_chars(text, "note text")
    message = text.encode("utf-8")
    signature = signer.private_key.sign(message)
    encoded = base64.b64encode(signer.key_id + signature).decode("ascii")
    return f"{text}\n{_SIG_PREFIX}{signer.name} {encoded}\n"


def open_note(note: str | bytes, verifier: NoteVerifier | str) -> str:
    """Return the text of a signed note once a signature by ``verifier`` checks out.

    Follows c2sp.org/signed-note: signatures by other keys are ignored; a failing signature by
    the trusted key rejects the note; a note with no signature by it is rejected.
    """
    trusted = NoteVerifier.from_vkey(verifier) if isinstance(verifier, str) else verifier

    # 1. The note is UTF-8 with no control character but newline.
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CheckpointError("note is not valid UTF-8") from exc
    if len(note) > _MAX_NOTE_CHARS:
        raise CheckpointError("note is too large")
    _check_note_chars(note, "note")

    # 2. The text ends at the last blank line; what follows is one or more signature lines,
    #    each ending in a newline. The text keeps its final newline, not the blank line.
    split = note.rfind("\n\n")
    if split < 0:
        raise CheckpointError("note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block or not block.endswith("\n"):
        raise CheckpointError("note has no signature lines, or they do not end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > _MAX_SIGNATURES:
        raise CheckpointError(f"note has more than {_MAX_SIGNATURES} signatures")

    message = text.encode("utf-8")
    verified = False
    for number, line in enumerate(lines, start=1):
        # 3. Each line is: em dash, space, key name, space, base64(key ID || signature).
        if not line.startswith(_SIG_PREFIX):
            raise CheckpointError(f"signature line {number} does not start with an em dash")
        name, _, encoded = line[len(_SIG_PREFIX) :].partition(" ")
        raw = _b64decode(encoded) if encoded else None
        if not is_valid_key_name(name) or raw is None or len(raw) < 5:
            raise CheckpointError(f"signature line {number} is malformed")
        # 4. Lines whose (name, key ID) is not the trusted key's are ignored, even if one of the
        #    two matches.
        if name != trusted.name or raw[:4] != trusted.key_id:
            continue
        # 5. Every signature by the trusted key must verify, or the whole note is rejected (Go
        #    skips repeats of a verified one; checking them too is stricter and as cheap).
        if not trusted.verify(message, raw[4:]):
            raise CheckpointSignatureError(
                f"invalid signature for key {trusted.name}+{trusted.key_id.hex()}"
            )
        verified = True

    # 6. At least one signature by the trusted key must have verified.
    if not verified:
        raise CheckpointSignatureError(
            f"note has no signature by key {trusted.name}+{trusted.key_id.hex()}"
        )
    return text


# --- checkpoints --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: origin, tree size and RFC 6962 root hash (plus optional extension lines)."""

    origin: str
    tree_size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or not self.origin or "\n" in self.origin:
            raise CheckpointError("checkpoint origin must be a non-empty single line")
        _check_note_chars(self.origin, "checkpoint origin")
        if (
            not isinstance(self.tree_size, int)
            or isinstance(self.tree_size, bool)
            or not 0 <= self.tree_size < _MAX_TREE_SIZE
        ):
            raise CheckpointError("checkpoint tree size must be an integer in [0, 2**64)")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != _HASH_SIZE:
            raise CheckpointError(f"checkpoint root hash must be {_HASH_SIZE} bytes")
        if not isinstance(self.extensions, tuple):
            raise CheckpointError("checkpoint extensions must be a tuple of lines")
        for line in self.extensions:
            if not isinstance(line, str) or not line or "\n" in line:
                raise CheckpointError("checkpoint extension lines must be non-empty single lines")
            _check_note_chars(line, "checkpoint extension line")

    def body(self) -> str:
        """The note text: origin, size, base64 root, extensions, each ending in a newline."""
        root = base64.b64encode(self.root_hash).decode("ascii")
        lines = [self.origin, str(self.tree_size), root, *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def from_body(cls, text: str) -> Checkpoint:
        """Parse a checkpoint note text (c2sp.org/tlog-checkpoint)."""
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint body must end with a newline")
        lines = text[:-1].split("\n")
        # 1. At least three lines, none of them empty.
        if len(lines) < 3 or not all(lines):
            raise CheckpointError("checkpoint body needs origin, size and root on non-empty lines")
        origin, size_text, root_text, *extensions = lines
        # 2. Tree size: ASCII decimal without leading zeroes.
        if not _TREE_SIZE_RE.fullmatch(size_text):
            raise CheckpointError(f"checkpoint tree size {size_text!r} is not a plain decimal")
        # 3. Root hash: canonical base64 of 32 bytes.
        root = _b64decode(root_text)
        if root is None or len(root) != _HASH_SIZE:
            raise CheckpointError("checkpoint root hash is not base64 of 32 bytes")
        return cls(origin, int(size_text), root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> str:
    """Signed note text of ``checkpoint``; the signer's key name must be its origin."""
    # The spec says the key name SHOULD match the origin; requiring it lets verifiers find the
    # key from the origin alone and rejects a checkpoint signed by another log's key.
    if signer.name != checkpoint.origin:
        raise ValidationError(
            f"signer name {signer.name!r} differs from checkpoint origin {checkpoint.origin!r}"
        )
    return sign_note(checkpoint.body(), signer)


def verify_checkpoint(
    note: str | bytes, verifier: NoteVerifier | str, *, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint note and return the checkpoint it commits to.

    ``verifier`` is a :class:`NoteVerifier` or a verifier key string. The checkpoint's origin
    must equal ``origin``, by default the verifier's key name.
    """
    trusted = NoteVerifier.from_vkey(verifier) if isinstance(verifier, str) else verifier
    checkpoint = Checkpoint.from_body(open_note(note, trusted))
    expected = trusted.name if origin is None else origin
    if checkpoint.origin != expected:
        raise CheckpointError(
            f"checkpoint origin {checkpoint.origin!r} is not the expected {expected!r}"
        )
    return checkpoint
