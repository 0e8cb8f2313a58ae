"""API keys with ``read`` and ``write`` scopes, stored only as salted scrypt hashes.

A key reads ``tt_<id>.<secret>``: the id finds the stored row, the secret is checked against
its scrypt hash with a constant-time comparison. The key itself is shown once, when it is
created, and never stored. Verifying scrypt costs tens of milliseconds by design, so a key
verified once is remembered in memory by the SHA-256 of the whole key; revocation is still
checked in the database on every request.

Dashboard sessions and one-time login links are random tokens stored by their SHA-256 (the
tokens are 256-bit random, so a fast hash is enough); a session grants ``read`` only, so a
cookie can never change anything.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from threattune.errors import ConfigError
from threattune.service.store import ApiKeyRecord, ServiceStore

logger = logging.getLogger(__name__)

__all__ = [
    "READ",
    "SCOPES",
    "WRITE",
    "KeyRing",
    "Principal",
    "hash_secret",
    "new_key",
    "parse_key",
]

READ = "read"
WRITE = "write"
SCOPES = (READ, WRITE)
KEY_PREFIX = "tt_"
_KDF = "scrypt:n=16384,r=8,p=1"
_KEY_PATTERN = re.compile(r"^tt_([0-9a-f]{12})\.([A-Za-z0-9_-]{32,128})$")
_REMEMBERED = 1024


@dataclass(frozen=True)
class Principal:
    """Who a request speaks for: a key's id and name, and the scopes it holds here."""

    key_id: str
    name: str
    scopes: frozenset[str]
    via: str

    def can(self, scope: str) -> bool:
        """Whether this principal holds ``scope``; ``read`` and ``write`` are independent, so
        an ingest key with ``write`` alone cannot read alerts back."""
        return scope in self.scopes


def hash_secret(secret: str, salt: bytes, kdf: str = _KDF) -> str:
    """The hex scrypt digest of a key's secret with ``salt``."""
    params = dict(part.split("=") for part in kdf.removeprefix("scrypt:").split(","))
    digest = hashlib.scrypt(
        secret.encode("utf-8"),
        salt=salt,
        n=int(params["n"]),
        r=int(params["r"]),
        p=int(params["p"]),
        maxmem=64 * 1024 * 1024,
        dklen=32,
    )
    return digest.hex()


def parse_key(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    match = _KEY_PATTERN.match(key.strip())
    return (match.group(1), match.group(2)) if match else None


def new_key(name: str, scopes: Iterable[str]) -> tuple[str, ApiKeyRecord]:
    """A fresh key and the record to store for it; the key is not kept anywhere."""
    wanted = frozenset(s.strip().lower() for s in scopes)
    unknown = sorted(wanted - set(SCOPES))
    if unknown or not wanted:
        raise ConfigError(
            "unknown scope" if unknown else "a key needs at least one scope",
            field="--scope",
            expected=" and/or ".join(SCOPES),
            found=", ".join(unknown) if unknown else "none",
            fix="pass --scope read, --scope write, or both",
        )
    if not name.strip() or len(name) > 200:
        raise ConfigError(
            "a key needs a short name",
            field="NAME",
            expected="1 to 200 characters naming who or what uses the key",
            found=repr(name),
        )
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    record = ApiKeyRecord(
        key_id=key_id,
        name=name.strip(),
        scopes=wanted,
        kdf=_KDF,
        salt=salt.hex(),
        digest=hash_secret(secret, salt),
        created_at=datetime.now(UTC),
    )
    return f"{KEY_PREFIX}{key_id}.{secret}", record


def token_hash(token: str) -> str:
    """The SHA-256 under which a session or login-link token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class KeyRing:
    """Checks keys and sessions against a :class:`ServiceStore`."""

    def __init__(
        self,
        store: ServiceStore,
        *,
        session_hours: float = 12.0,
        link_seconds: float = 120.0,
    ) -> None:
        self.store = store
        self.session_lifetime = timedelta(hours=session_hours)
        self.link_lifetime = timedelta(seconds=link_seconds)
        self._verified: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, name: str, scopes: Iterable[str]) -> tuple[str, ApiKeyRecord]:
        """Create and store a key; returns the key (show it once) and its record."""
        key, record = new_key(name, scopes)
        self.store.add_key(record)
        logger.info(
            "added API key %s (%s) with scopes %s",
            record.key_id,
            record.name,
            ",".join(sorted(record.scopes)),
        )
        return key, record

    def authenticate(self, key: str) -> Principal | None:
        """The principal of a valid, unrevoked key, else None."""
        parsed = parse_key(key)
        if parsed is None:
            return None
        key_id, secret = parsed
        record = self.store.key(key_id)
        if record is None or not record.active:
            return None
        fingerprint = hashlib.sha256(key.strip().encode("utf-8")).hexdigest()
        with self._lock:
            known = self._verified.get(fingerprint) == key_id
            if known:
                self._verified.move_to_end(fingerprint)
        if not known:
            expected = hash_secret(secret, bytes.fromhex(record.salt), record.kdf)
            if not hmac.compare_digest(expected, record.digest):
                return None
            with self._lock:
                self._verified[fingerprint] = key_id
                while len(self._verified) > _REMEMBERED:
                    self._verified.popitem(last=False)
        return Principal(record.key_id, record.name, record.scopes, via="key")

    def open_session(self, principal: Principal) -> str:
        """A new dashboard session token for a principal holding ``read``."""
        token = secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + self.session_lifetime
        self.store.add_session(token_hash(token), principal.key_id, "session", expires)
        return token

    def session(self, token: str) -> Principal | None:
        """The read-only principal of a live session token, else None."""
        key_id = self.store.session_key(token_hash(token), "session")
        return self._read_only(key_id, via="session")

    def end_session(self, token: str) -> None:
        """Forget a session token."""
        self.store.end_session(token_hash(token))

    def open_link(self, principal: Principal) -> str:
        """A one-time login-link token, valid for a short while."""
        token = secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + self.link_lifetime
        self.store.add_session(token_hash(token), principal.key_id, "link", expires)
        return token

    def use_link(self, token: str) -> Principal | None:
        """Spend a login-link token; the read-only principal, or None when it is not valid."""
        return self._read_only(self.store.use_link(token_hash(token)), via="link")

    def _read_only(self, key_id: str | None, *, via: str) -> Principal | None:
        if key_id is None:
            return None
        record = self.store.key(key_id)
        if record is None or not record.active:
            return None
        if READ not in record.scopes:
            return None
        return Principal(record.key_id, record.name, frozenset({READ}), via=via)
