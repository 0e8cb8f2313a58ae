"""Header helpers for mail ingestion: decoded values, addresses, sender signals, dates."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import decode_header
from email.headerregistry import BaseHeader
from email.message import Message as EmailMessage
from email.utils import parseaddr, parsedate_to_datetime
from typing import Any

from threattune.sources._text import decode_bytes, one_line, unsurrogate

__all__ = [
    "HeaderSignals",
    "header_signals",
    "header_value",
    "header_values",
    "message_date",
    "parse_address",
    "parse_date",
    "plausible_year",
]

_EXPORT_DATES = ("%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")
_VERDICT = re.compile(r"\b(spf|dkim|dmarc)\s*=\s*([a-z]+)", re.IGNORECASE)
_DOMAIN_IN_NAME = re.compile(
    r"(?<![a-z0-9-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,24}))(?![a-z0-9-])"
)
_ADDRESS_IN_NAME = re.compile(r"@((?:[a-z0-9-]+\.)+[a-z0-9-]+)")
_COMMON_TLDS = frozenset(
    "com net org info biz edu gov mil int io co app dev xyz online site top club shop store "
    "live email link click bank finance support services group cloud tech".split()
)
_SECOND_LEVEL = frozenset("co com net org gov ac edu ne or go mil".split())
_ANGLED_ADDRESS = re.compile(r"<([^<>\s@]+@[^<>\s@]+)>")
_BARE_ADDRESS = re.compile(r"[^\s<>\"'(),;:@]+@[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class HeaderSignals:
    """Header evidence an analyst weighs: sender mismatches, authentication verdicts, hops.

    A mismatch is ``None`` when the header it compares is absent. Domains are compared by
    their registrable part (``mail.paypal.com`` matches ``paypal.com``), approximated without a
    public-suffix list.
    """

    from_domain: str | None = None
    reply_to_domain: str | None = None
    return_path_domain: str | None = None
    reply_to_mismatch: bool | None = None
    return_path_mismatch: bool | None = None
    display_name_domain: str | None = None
    display_name_spoof: bool = False
    spf: str | None = None
    dkim: str | None = None
    dmarc: str | None = None
    received_hops: int = 0


def header_values(message: EmailMessage, name: str, *, decode: bool = True) -> list[str]:
    """Every value of header ``name``, each on one line, encoded words decoded unless not asked.

    Raw values are decoded here, word by word, rather than by the parser's header classes:
    that is several times faster and never raises on a hostile value. Address headers are read
    undecoded (``decode=False``) so that a line break or address hidden in an encoded display
    name cannot change which address is parsed.
    """
    wanted = name.lower()
    values = [raw for key, raw in _raw_items(message) if key.lower() == wanted]
    return [one_line(unsurrogate(_decode_words(raw) if decode else raw)) for raw in values]


def header_value(message: EmailMessage, name: str, *, decode: bool = True) -> str:
    """The first value of header ``name``, or an empty string; see :func:`header_values`."""
    values = header_values(message, name, decode=decode)
    return values[0] if values else ""


def _raw_items(message: EmailMessage) -> list[tuple[str, str]]:
    raw_items = getattr(message, "raw_items", None)
    if raw_items is not None:
        return [(str(k), str(v)) for k, v in raw_items()]
    return [(str(k), v if isinstance(v, str) else str(v)) for k, v in message.items()]


def _decode_words(raw: Any) -> str:
    if isinstance(raw, BaseHeader):
        return str(raw)
    if not isinstance(raw, str):
        raw = str(raw)
    try:
        chunks = decode_header(raw)
    except Exception:  # noqa: BLE001 - a bogus encoded word must not drop the message
        return raw
    text = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            text.append(chunk)
        else:
            text.append(decode_bytes(chunk, charset)[0])
    return "".join(text)


def parse_address(value: str) -> tuple[str, str | None]:
    """Display name and lower-case ``user@domain`` of an undecoded address header.

    The address is parsed first and the display name's encoded words decoded after, as RFC
    2047 wants, so a decoded name can smuggle in neither a line break nor another address.

    >>> parse_address('=?utf-8?q?Bank=0D=0ABcc=3A_x=40y=2Eexample?= <a@bank.example>')
    ('Bank Bcc: x@y.example', 'a@bank.example')
    """
    if not value:
        return "", None
    name, address = parseaddr(value)
    if "@" not in address:
        angled = _ANGLED_ADDRESS.findall(value)
        bare = angled[-1:] or _BARE_ADDRESS.findall(value)[:1]
        address = bare[0] if bare else ""
        name = value.split("<", 1)[0].strip().strip('"') if angled else ""
    address = address.strip().strip("<>").lower()
    return one_line(unsurrogate(_decode_words(name))), (address if "@" in address else None)


def domain_of(address: str | None) -> str | None:
    """The domain of an address, without a trailing dot or brackets."""
    if not address or "@" not in address:
        return None
    return address.rsplit("@", 1)[1].strip("[]. ").lower() or None


def base_domain(domain: str) -> str:
    """The registrable part of a domain, roughly: ``a.b.example.co.uk`` → ``example.co.uk``."""
    labels = [label for label in domain.lower().strip(".").split(".") if label]
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _mismatch(left: str | None, right: str | None) -> bool | None:
    if left is None or right is None:
        return None
    return base_domain(left) != base_domain(right)


def header_signals(
    message: EmailMessage,
    from_name: str,
    from_address: str | None,
    reply_to: str | None,
    return_path: str | None,
) -> HeaderSignals:
    """The header signals of one parsed message."""
    from_domain = domain_of(from_address)
    reply_domain = domain_of(reply_to)
    return_domain = domain_of(return_path)

    display_domain = _display_name_domain(from_name, from_domain)
    verdicts = auth_verdicts(message)
    return HeaderSignals(
        from_domain=from_domain,
        reply_to_domain=reply_domain,
        return_path_domain=return_domain,
        reply_to_mismatch=_mismatch(from_domain, reply_domain),
        return_path_mismatch=_mismatch(from_domain, return_domain),
        display_name_domain=display_domain,
        display_name_spoof=display_domain is not None,
        spf=verdicts.get("spf"),
        dkim=verdicts.get("dkim"),
        dmarc=verdicts.get("dmarc"),
        received_hops=sum(1 for key in message.keys() if key.lower() == "received"),
    )


def _display_name_domain(from_name: str, from_domain: str | None) -> str | None:
    """A domain the display name shows that is not the sender's: ``"paypal.com" <x@evil>``.

    Any domain of an address written in the name counts; a bare domain-like word counts when
    its top-level domain is a country code or a common one, so that ``Mr.Smith`` does not.
    """
    name = from_name.lower()
    candidates = [match.group(1) for match in _ADDRESS_IN_NAME.finditer(name)]
    for match in _DOMAIN_IN_NAME.finditer(name):
        if len(match.group(2)) == 2 or match.group(2) in _COMMON_TLDS:
            candidates.append(match.group(1))
    for candidate in candidates:
        if from_domain is None or base_domain(candidate) != base_domain(from_domain):
            return candidate
    return None


def auth_verdicts(message: EmailMessage) -> dict[str, str]:
    """SPF, DKIM and DMARC results from the topmost Authentication-Results that has each.

    DKIM counts as ``pass`` when any signature passed. ``Received-SPF`` fills in SPF when no
    Authentication-Results header gives it.
    """
    verdicts: dict[str, str] = {}
    for value in header_values(message, "Authentication-Results"):
        found: dict[str, list[str]] = {}
        for method, result in _VERDICT.findall(value):
            found.setdefault(method.lower(), []).append(result.lower())
        for method, results in found.items():
            if method not in verdicts:
                verdicts[method] = "pass" if "pass" in results else results[0]

    received_spf = header_value(message, "Received-SPF")
    if "spf" not in verdicts and received_spf:
        verdicts["spf"] = received_spf.split(None, 1)[0].lower().strip("();:")
    return verdicts


def message_date(message: EmailMessage) -> tuple[datetime | None, int | None]:
    """The Date header as an aware datetime, and the year the message was most likely sent.

    The year is the Date header's when it is plausible, else the year the topmost Received hop
    stamped, else None: spam often carries a bogus Date, and the era of a lure matters.
    """
    when = parse_date(header_value(message, "Date"))
    year = plausible_year(when)
    if year is None:
        received = header_value(message, "Received")
        if ";" in received:
            year = plausible_year(parse_date(received.rsplit(";", 1)[1]))
    return when, year


def plausible_year(when: datetime | None) -> int | None:
    """The year of ``when`` if mail could have been sent then (1980 to next year), else None."""
    if when is None or not 1980 <= when.year <= datetime.now(UTC).year + 1:
        return None
    return when.year


def parse_date(text: str) -> datetime | None:
    """A mail date as an aware datetime, or None when it cannot be read.

    Reads RFC 2822 dates and the ``M/D/YYYY H:MM`` form of spreadsheet exports. A date without
    a zone is taken as UTC; a three-digit year such as ``102`` (a classic mailer bug) as 2002.
    """
    text = (text or "").strip()
    if not text:
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        when = _parse_export_date(text)
    if when is None:
        return None

    if 100 <= when.year < 200:
        try:
            when = when.replace(year=when.year + 1900)
        except ValueError:
            return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _parse_export_date(text: str) -> datetime | None:
    for layout in _EXPORT_DATES:
        try:
            return datetime.strptime(text, layout)
        except ValueError:
            continue
    return None
