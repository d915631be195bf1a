"""C2SP signed notes, tlog checkpoints and tlog cosignatures (Ed25519), with ``cryptography``.

* signed-note: the text (ending in a newline), a blank line, then signature lines
  ``— <key name> base64(key ID ‖ signature)``. Key ID = ``SHA-256(name ‖ 0x0A ‖ type ‖
  public key)[:4]``; type ``0x01`` for Ed25519 note signatures, ``0x04`` for cosignatures.
* verifier keys (vkeys): ``<name>+<key ID hex>+base64(type ‖ public key)``; signer keys:
  ``PRIVATE+KEY+<name>+<key ID hex>+base64(type ‖ 32-byte seed)``.
* tlog-checkpoint body: origin line, decimal tree size, base64 root hash (each ending ``\\n``).
* tlog-cosignature v1: the signature is ``u64 timestamp ‖ Ed25519 signature`` over
  ``cosignature/v1\\ntime <timestamp>\\n`` ‖ the checkpoint body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
_DASH = "\u2014 "
_MAX_SIGNATURES = 32
_COSIG_HEADER = b"cosignature/v1\n"


class NoteError(ValueError):
    """A note, key or checkpoint is malformed, or a signature does not verify."""


def key_id(name: str, sig_type: int, public: bytes) -> bytes:
    """The 4-byte key ID of the signed-note spec."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public).digest()[:4]


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name) or not name.isprintable():
        raise NoteError(f"invalid key name {name!r}: non-empty, no spaces, no '+'")


def _b64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise NoteError(f"{what} is not valid base64") from exc
    # Canonical only: unused padding bits must not give one value two spellings.
    if base64.b64encode(raw).decode("ascii") != text:
        raise NoteError(f"{what} is not canonical base64")
    return raw


@dataclass(frozen=True, slots=True)
class Verifier:
    """A public key as the note spec names it: name, signature type, key ID, key bytes."""

    name: str
    sig_type: int
    public: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.sig_type, self.public)

    def vkey(self) -> str:
        """The ``name+hexid+base64`` text form."""
        raw = base64.b64encode(bytes([self.sig_type]) + self.public).decode()
        return f"{self.name}+{self.key_id.hex()}+{raw}"

    @classmethod
    def parse(cls, text: str) -> Verifier:
        """A vkey; :class:`NoteError` unless well formed and self-consistent."""
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteError("a verifier key is <name>+<key id hex>+<base64 key>")
        name, hex_id, raw_b64 = parts
        _check_name(name)
        raw = _b64(raw_b64, "verifier key")
        if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1):
            raise NoteError("verifier key is not an Ed25519 (type 0x01 or 0x04) key")
        verifier = cls(name, raw[0], raw[1:])
        if verifier.key_id.hex() != hex_id.lower():
            raise NoteError("verifier key ID does not match its name and key")
        return verifier

    def _key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.public)

    def check(self, signature: bytes, message: bytes) -> bool:
        """True when ``signature`` (Ed25519, 64 bytes) signs ``message``."""
        try:
            self._key().verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True, slots=True)
class Signer:
    """An Ed25519 private key with its note name and signature type."""

    name: str
    sig_type: int
    seed: bytes
    # Derived once: loading a key computes its public key (a scalar multiplication, as costly
    # as a signature), and the checkpointer signs with the same key all day.
    _key: Ed25519PrivateKey = field(init=False, repr=False, compare=False)
    verifier: Verifier = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if len(self.seed) != 32:
            raise NoteError("an Ed25519 seed is 32 bytes")
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        key = Ed25519PrivateKey.from_private_bytes(self.seed)
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "verifier", Verifier(self.name, self.sig_type, public))

    @classmethod
    def generate(cls, name: str, sig_type: int = ED25519) -> Signer:
        """A new random key."""
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            NoEncryption,
            PrivateFormat,
        )

        key = Ed25519PrivateKey.generate()
        seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return cls(name, sig_type, seed)

    def skey(self) -> str:
        """The ``PRIVATE+KEY+name+hexid+base64`` text form (keep it secret)."""
        raw = base64.b64encode(bytes([self.sig_type]) + self.seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier.key_id.hex()}+{raw}"

    @classmethod
    def parse(cls, text: str) -> Signer:
        """A signer key text; :class:`NoteError` unless well formed and self-consistent."""
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("a signer key is PRIVATE+KEY+<name>+<key id hex>+<base64 key>")
        raw = _b64(parts[4], "signer key")
        if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1):
            raise NoteError("signer key is not an Ed25519 (type 0x01 or 0x04) key")
        signer = cls(parts[2], raw[0], raw[1:])
        if signer.verifier.key_id.hex() != parts[3].lower():
            raise NoteError("signer key ID does not match its name and key")
        return signer

    def sign(self, message: bytes) -> bytes:
        """Raw Ed25519 signature of ``message``."""
        return self._key.sign(message)


# ---- notes ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: key name, key ID, signature bytes (after the ID)."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{_DASH}{self.name} {base64.b64encode(self.key_id + self.signature).decode()}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A parsed signed note: its text (with the final newline) and its signature lines."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def render(self) -> str:
        """The note as text: text, blank line, signature lines."""
        return self.text + "\n" + "".join(s.line() for s in self.signatures)

    def with_signature(self, signature: NoteSignature) -> Note:
        """The note with one more signature line (replacing one of the same key)."""
        kept = tuple(
            s for s in self.signatures if (s.name, s.key_id) != (signature.name, signature.key_id)
        )
        return Note(self.text, (*kept, signature))

    def by(self, verifier: Verifier) -> list[NoteSignature]:
        """The signature lines whose name and key ID are the verifier's."""
        kid = verifier.key_id
        return [s for s in self.signatures if s.name == verifier.name and s.key_id == kid]


def parse_note(data: str | bytes) -> Note:
    """Parse a signed note; :class:`NoteError` if it is not one."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError("a note must be UTF-8") from exc
    if any(ord(c) < 0x20 and c != "\n" for c in data):
        raise NoteError("a note must not contain control characters other than newline")
    if not data.endswith("\n"):
        raise NoteError("a note must end with a newline")
    split = data.rfind("\n\n")
    if split < 0:
        raise NoteError("a note has no blank line before its signatures")
    text, block = data[: split + 1], data[split + 2 :]
    signatures: list[NoteSignature] = []
    for line in block.splitlines():
        if not line.startswith(_DASH):
            raise NoteError("a signature line must start with an em dash and a space")
        name, sep, sig_b64 = line[len(_DASH) :].partition(" ")
        if not sep:
            raise NoteError("a signature line has no signature")
        _check_name(name)
        raw = _b64(sig_b64, "signature")
        if len(raw) < 5:
            raise NoteError("a signature is too short")
        signatures.append(NoteSignature(name, raw[:4], raw[4:]))
    if not signatures:
        raise NoteError("a note has no signature lines")
    if len(signatures) > _MAX_SIGNATURES:
        raise NoteError("a note has too many signature lines")
    return Note(text, tuple(signatures))


def sign_note(text: str, signer: Signer) -> Note:
    """A note of ``text`` (must end with a newline) signed by ``signer`` (type 0x01)."""
    if not text.endswith("\n") or "\n\n" in text:
        raise NoteError("note text must end with one newline and hold no blank line")
    if signer.sig_type != ED25519:
        raise NoteError("a note signature needs an Ed25519 (0x01) key")
    sig = NoteSignature(signer.name, signer.verifier.key_id, signer.sign(text.encode()))
    return Note(text, (sig,))


def verify_note(note: Note, verifier: Verifier) -> None:
    """Raise :class:`NoteError` unless the note carries a valid signature of ``verifier``."""
    mine = note.by(verifier)
    if not mine:
        raise NoteError(f"the note is not signed by {verifier.name}")
    for sig in mine:
        if not verifier.check(sig.signature, note.text.encode()):
            raise NoteError(f"the signature of {verifier.name} does not verify")


# ---- checkpoints ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tlog checkpoint body: origin, tree size, root hash (and extension lines)."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        """The body: origin, size, base64 root, extensions, each ending in a newline."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "".join(f"{line}\n" for line in (*lines, *self.extensions))

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """A checkpoint body; :class:`NoteError` unless well formed."""
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("a checkpoint has an origin, a size and a root hash line")
        origin, size, root_b64, *extensions = lines[:-1]
        if not origin:
            raise NoteError("a checkpoint's origin line is empty")
        if not size.isdigit() or (len(size) > 1 and size[0] == "0") or len(size) > 20:
            raise NoteError("a checkpoint's size is not a decimal number")
        root = _b64(root_b64, "checkpoint root hash")
        if len(root) != 32:
            raise NoteError("a checkpoint's root hash is not 32 bytes")
        if any(not line for line in extensions):
            raise NoteError("a checkpoint has an empty extension line")
        return cls(origin, int(size), root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> Note:
    """The checkpoint as a note signed by the log's key."""
    return sign_note(checkpoint.text(), signer)


def open_checkpoint(data: str | bytes, verifier: Verifier) -> tuple[Checkpoint, Note]:
    """Parse a signed checkpoint and verify the log's signature on it."""
    note = parse_note(data)
    verify_note(note, verifier)
    checkpoint = Checkpoint.parse(note.text)
    if checkpoint.origin != verifier.name:
        raise NoteError(f"checkpoint origin {checkpoint.origin!r} is not the log {verifier.name!r}")
    return checkpoint, note


# ---- cosignatures -----------------------------------------------------------------------


def _cosigned_message(timestamp: int, body: str) -> bytes:
    return _COSIG_HEADER + b"time %d\n" % timestamp + body.encode()


def cosign(note: Note, signer: Signer, timestamp: int) -> NoteSignature:
    """A tlog-cosignature/v1 line over the note's checkpoint body at ``timestamp`` (seconds)."""
    if signer.sig_type != COSIGNATURE_V1:
        raise NoteError("a cosignature needs a cosigner key (type 0x04)")
    if not 0 <= timestamp < 2**63:
        raise NoteError("cosignature timestamp out of range")
    signature = signer.sign(_cosigned_message(timestamp, note.text))
    return NoteSignature(
        signer.name, signer.verifier.key_id, struct.pack(">Q", timestamp) + signature
    )


def verify_cosignature(note: Note, verifier: Verifier) -> int:
    """The timestamp of the witness's valid cosignature on ``note``; :class:`NoteError` if none."""
    if verifier.sig_type != COSIGNATURE_V1:
        raise NoteError("a cosignature verifier key has type 0x04")
    mine = note.by(verifier)
    if not mine:
        raise NoteError(f"the checkpoint is not cosigned by {verifier.name}")
    for sig in mine:
        if len(sig.signature) != 8 + 64:
            raise NoteError(f"the cosignature of {verifier.name} has the wrong length")
        (timestamp,) = struct.unpack(">Q", sig.signature[:8])
        if timestamp >= 2**63 or not verifier.check(
            sig.signature[8:], _cosigned_message(timestamp, note.text)
        ):
            raise NoteError(f"the cosignature of {verifier.name} does not verify")
        return int(timestamp)
    raise NoteError(f"the checkpoint is not cosigned by {verifier.name}")  # pragma: no cover
