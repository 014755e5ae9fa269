"""An agent's state file: one blob, encrypted at rest under a key its user holds.

What goes in the blob is ``client.secure_state``'s business; this module only seals it,
writes it so that a crash never leaves a torn file, and opens it again. It must not
keep the key anywhere but in memory: the key is the user's (a passphrase stretched with
scrypt, or 32 raw bytes in a key file kept away from the state). Blocking file I/O: the
agent runs ``read`` and ``write`` in a thread.

Layout (docs/crypto.md 9 gives it too); integers are unsigned, big-endian::

    offset  size  field
    0       8     magic "OPSHUBST"
    8       1     format version (1)
    9       1     key kind: 1 = passphrase (scrypt), 2 = key file (the key itself)
    10      1     scrypt log2(N)                  (0 for a key file)
    11      1     scrypt r                        (0 for a key file)
    12      1     scrypt p                        (0 for a key file)
    13      16    scrypt salt                     (zeros for a key file)
    29      12    AES-GCM nonce, fresh for every write
    41      1     length n of the unit id
    42      n     unit id, UTF-8
    42 + n  ...   AES-256-GCM(key, nonce, body, associated data = bytes 0 .. 42 + n)

The whole header is associated data: a file whose parameters or unit id were changed,
or that was copied over another unit's file, does not open.
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from protocol.errors import Code, StateError, UsageError

MAGIC = b"OPSHUBST"
VERSION = 1
PASSPHRASE, KEY_FILE = 1, 2
#: The environment variable an agent's passphrase comes from (``StateKey.from_env``).
PASSPHRASE_ENV = "OPSHUB_STATE_PASSPHRASE"
#: scrypt cost of a new file: N = 2**17, r = 8, p = 1 (RFC 7914's parameters at OWASP's
#: recommended N); 128 MiB and ~0.3 s on the project's machine, once per agent start.
SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P = 17, 8, 1
#: The most memory a file's header may make scrypt use (128 * r * N * p bytes, counting
#: p as if run in parallel): the header is
#: read before anything is authenticated, so it must not be able to ask for anything.
_SCRYPT_MAX_MEMORY = 1 << 30
_FIXED = struct.Struct(">8sBBBBB16s12sB")
_SALT, _NONCE, _KEY = 16, 12, 32


@dataclass(frozen=True, slots=True, repr=False)
class StateKey:
    """The user's key to a state file: a passphrase or the 32 bytes of a key file.
    ``log2_n`` is the scrypt cost of a file written anew; an existing file names its own.
    (No repr: it must not end up in a log.)"""

    passphrase: bytes | None = None
    raw: bytes | None = None
    #: where ``raw`` came from, so that a key file beside the state is refused
    source: Path | None = None
    log2_n: int = SCRYPT_LOG2_N

    @classmethod
    def from_passphrase(cls, passphrase: str, *, log2_n: int = SCRYPT_LOG2_N) -> StateKey:
        """Raises UsageError for an empty passphrase."""
        if not passphrase:
            raise UsageError("the state passphrase is empty")
        return cls(passphrase=passphrase.encode(), log2_n=log2_n)

    @classmethod
    def from_env(cls, name: str = PASSPHRASE_ENV) -> StateKey:
        """The passphrase in environment variable ``name``. Raises UsageError if it is
        unset or empty."""
        value = os.environ.get(name, "")
        if not value:
            raise UsageError(f"set {name} to the passphrase of the agent's state file")
        return cls.from_passphrase(value)

    @classmethod
    def from_file(cls, path: Path) -> StateKey:
        """A key file: 32 raw bytes, or 64 hex digits (``openssl rand -hex 32``). Raises
        UsageError naming the file if it cannot be read or holds anything else."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise UsageError(f"state key file {path}: {exc.strerror}") from None
        if len(data) != _KEY:
            try:
                data = bytes.fromhex(data.decode("ascii").strip())
            except ValueError:
                data = b""
        if len(data) != _KEY:
            raise UsageError(f"state key file {path} must hold 32 bytes or 64 hex digits")
        return cls(raw=data, source=Path(path))


class StateFile:
    """One unit's state file at ``path``. ``read`` and ``write`` are blocking; the caller
    runs them one at a time (``client.secure_state`` does, in a thread)."""

    def __init__(self, path: Path, key: StateKey, unit: str) -> None:
        """Raises UsageError if the key file is in the state file's directory: whoever
        copies that directory would have both."""
        self.path = Path(path)
        self.key = key
        self.unit = unit
        if key.source is not None and key.source.resolve().parent == \
                self.path.resolve().parent:
            raise UsageError(f"state key file {key.source} is in the same directory as the "
                             f"state file {self.path}: keep the key somewhere else")
        #: header bytes 9 .. 29 (key kind, scrypt cost, salt) and the key they give
        self._key: tuple[bytes, AESGCM] | None = None
        self.writes = 0  # files written by this object

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> bytes:
        """The body. Raises StateError: ``state_unreadable`` (cannot be read, not a state
        file, another format version, a malformed header), ``state_mismatch`` (another
        unit's), ``state_wrong_key`` (does not decrypt: a wrong passphrase or key file, or
        the file was altered)."""
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise StateError(f"state file {self.path} cannot be read: {exc.strerror}",
                             code=Code.STATE_UNREADABLE) from None
        if len(data) < _FIXED.size or not data.startswith(MAGIC):
            raise StateError(f"{self.path} is not an opshub state file",
                             code=Code.STATE_UNREADABLE)
        _, version, kind, log2_n, r, p, salt, nonce, n = _FIXED.unpack_from(data)
        if version != VERSION:
            raise StateError(f"state file {self.path} has format version {version}; this "
                             f"opshub reads version {VERSION}", code=Code.STATE_UNREADABLE)
        end = _FIXED.size + n
        try:
            unit = data[_FIXED.size:end].decode()
        except UnicodeDecodeError:
            unit = ""
        if len(data) < end + 16 or not unit:
            raise StateError(f"state file {self.path} is truncated or malformed",
                             code=Code.STATE_UNREADABLE)
        if unit != self.unit:
            raise StateError(f"state file {self.path} is {unit!r}'s, not {self.unit!r}'s",
                             code=Code.STATE_MISMATCH)
        kdf = data[9:29]
        aead = AESGCM(self._derive(kind, log2_n, r, p, salt))
        try:
            body = aead.decrypt(nonce, data[end:], data[:end])
        except InvalidTag:
            raise StateError(f"state file {self.path} does not decrypt with this "
                             f"{'passphrase' if kind == PASSPHRASE else 'key file'}: a "
                             f"wrong key, or the file was altered",
                             code=Code.STATE_WRONG_KEY) from None
        self._key = kdf, aead  # the next writes use the same key and salt
        return body

    def write(self, body: bytes) -> None:
        """Replace the file with ``body``, sealed: a temp file in the same directory,
        fsync, rename over the old one, fsync the directory. A crash at any point leaves
        the old file or the new one, whole. Mode 0600. Raises StateError
        (``state_write_failed``) naming the file; the old file is then untouched."""
        if self._key is None:
            self._key = self._new_key()
        kdf, aead = self._key
        unit = self.unit.encode()
        header = MAGIC + bytes([VERSION]) + kdf + os.urandom(_NONCE) + bytes([len(unit)]) + unit
        sealed = header + aead.encrypt(header[29:41], body, header)
        try:
            _replace(self.path, sealed)
        except OSError as exc:
            raise StateError(f"state file {self.path} could not be written: {exc}",
                             code=Code.STATE_WRITE) from None
        self.writes += 1

    def _new_key(self) -> tuple[bytes, AESGCM]:
        """The key of a file written anew: from the passphrase with a fresh salt, or the
        key file's bytes; with its header bytes 9 .. 29."""
        if self.key.raw is not None:
            kdf = bytes([KEY_FILE, 0, 0, 0]) + bytes(_SALT)
        else:
            kdf = bytes([PASSPHRASE, self.key.log2_n, SCRYPT_R, SCRYPT_P]) + os.urandom(_SALT)
        return kdf, AESGCM(self._derive(kdf[0], kdf[1], kdf[2], kdf[3], kdf[4:]))

    def _derive(self, kind: int, log2_n: int, r: int, p: int, salt: bytes) -> bytes:
        if kind == KEY_FILE:
            if self.key.raw is None:
                raise StateError(f"state file {self.path} is sealed with a key file; this "
                                 f"agent has a passphrase", code=Code.STATE_WRONG_KEY)
            return self.key.raw
        if kind != PASSPHRASE:
            raise StateError(f"state file {self.path} names an unknown key kind {kind}",
                             code=Code.STATE_UNREADABLE)
        if self.key.passphrase is None:
            raise StateError(f"state file {self.path} is sealed with a passphrase; this "
                             f"agent has a key file", code=Code.STATE_WRONG_KEY)
        if not (1 <= log2_n < 32 and r >= 1 and p >= 1
                and 128 * r * (1 << log2_n) * p <= _SCRYPT_MAX_MEMORY):
            raise StateError(f"state file {self.path} asks for scrypt parameters out of "
                             f"bounds (N = 2**{log2_n}, r = {r}, p = {p})",
                             code=Code.STATE_UNREADABLE)
        return Scrypt(salt=salt, length=_KEY, n=1 << log2_n, r=r, p=p).derive(
            self.key.passphrase)


def _replace(path: Path, data: bytes) -> None:
    """Atomically and durably replace ``path`` with ``data`` (mode 0600)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:  # mkstemp makes it 0600
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # the rename itself is durable only once the directory is
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
