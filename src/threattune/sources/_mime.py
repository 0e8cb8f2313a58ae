"""MIME helpers for :mod:`threattune.sources.mail`: text, URLs, header signals and attachments.

Everything here parses and measures only. Attachments are decoded in memory just far enough to
know their size, HTML is turned into text without running anything, and URLs are never fetched.
"""

from __future__ import annotations

import codecs
import re
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header
from email.headerregistry import BaseHeader
from email.message import Message as EmailMessage
from email.utils import parseaddr, parsedate_to_datetime
from typing import Any, NamedTuple

from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning

from threattune.findings import Severity

__all__ = [
    "Attachment",
    "HeaderSignals",
    "defang",
    "extract_urls",
    "html_to_text",
]

MAX_URLS = 500
MAX_PARTS = 500
MAX_DEPTH = 32
MAX_HEADER_CHARS = 2000

_URL = re.compile(r"""(?:(?:https?|ftp)://|www\.)[^\s<>"'`{}|\\^\[\]]+""", re.IGNORECASE)
_URL_TAIL = ".,;:!?'\"*"
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)
_FANG_DOT = re.compile(r"(?<!\[)\.(?!\])")
_DEFANGED_SCHEMES = {"http": "hxxp", "https": "hxxps", "ftp": "fxp"}
_HEADER_CONTROLS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_TEXT_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\u2060\ufeff\xad]")
_SPACES = re.compile(r"[ \t\xa0]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_VERDICT = re.compile(r"\b(spf|dkim|dmarc)\s*=\s*([a-z]+)", re.IGNORECASE)
_DOMAIN_IN_NAME = re.compile(
    r"(?<![a-z0-9-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,24}))(?![a-z0-9-])"
)
_COMMON_TLDS = frozenset(
    "com net org info biz edu gov mil int io co app dev xyz online site top club shop store "
    "live email link click bank finance support services group cloud tech".split()
)
_SECOND_LEVEL = frozenset("co com net org gov ac edu ne or go mil".split())
_BLOCK_TAGS = frozenset(
    "p div tr li ul ol table h1 h2 h3 h4 h5 h6 blockquote pre hr section article header footer "
    "center form".split()
)
_HIDDEN_TAGS = frozenset("script style template title object embed applet".split())
_URL_ATTRIBUTES = {"a": "href", "area": "href", "form": "action", "iframe": "src", "frame": "src"}
_ANGLED_ADDRESS = re.compile(r"<([^<>\s@]+@[^<>\s@]+)>")
_BARE_ADDRESS = re.compile(r"[^\s<>\"'(),;:@]+@[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)
_REFRESH_URL = re.compile(r"url\s*=\s*['\"]?([^'\";\s]+)", re.IGNORECASE)


class Note(NamedTuple):
    """Something noticed while parsing one message, before its source is attached."""

    kind: str
    severity: Severity
    message: str
    evidence: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Attachment:
    """An attachment, measured and never opened: its name, declared type and decoded size."""

    filename: str | None
    content_type: str
    size: int


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


@dataclass
class Body:
    """What the walk over a message's parts collected."""

    texts: list[str] = field(default_factory=list)
    html: bool = False
    urls: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    parts: int = 0

    @property
    def text(self) -> str:
        return "\n\n".join(t for t in self.texts if t)


def defang(url: str) -> str:
    """Make a URL safe to paste into a ticket: ``hxxp://`` and ``[.]`` in the host.

    Applying it twice changes nothing more.

    >>> defang("http://login.evil.example/a.php")
    'hxxp://login[.]evil[.]example/a.php'
    >>> defang("www.evil.example")
    'www[.]evil[.]example'
    """
    scheme = ""
    rest = url
    match = _SCHEME.match(url)
    if match:
        name = match.group(1).lower()
        scheme = _DEFANGED_SCHEMES.get(name, name) + "://"
        rest = url[match.end() :]

    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    return scheme + _FANG_DOT.sub("[.]", rest[:cut]) + rest[cut:]


def extract_urls(text: str) -> list[str]:
    """URLs written out in plain text (``http``, ``https``, ``ftp`` and bare ``www.``), in order.

    >>> extract_urls("Verify at http://evil.example/login. Thanks")
    ['http://evil.example/login']
    """
    urls: list[str] = []
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(_URL_TAIL)
        while url.endswith(")") and url.count("(") < url.count(")"):
            url = url[:-1].rstrip(_URL_TAIL)
        if len(url) > 8:
            urls.append(url[:2048])
    return urls


def html_to_text(html: str) -> tuple[str, list[str]]:
    """Visible text of an HTML body, and the link, form and frame targets it points at.

    Scripts, styles and comments are dropped as markup; nothing is run or fetched.

    >>> html_to_text('<p>Hi<script>steal()</script></p><a href="http://x.example">go</a>')
    ('Hi\\ngo', ['http://x.example'])
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        soup = BeautifulSoup(html, "html.parser")

    targets: list[str] = []
    hidden, breaks, blocks = [], [], []
    for tag in soup.find_all(True):
        name = tag.name
        attribute = _URL_ATTRIBUTES.get(name)
        value = tag.get(attribute) if attribute else None
        if name == "meta" and isinstance(tag.get("content"), str):
            found = _REFRESH_URL.search(str(tag.get("content")))
            value = found.group(1) if found else None
        if isinstance(value, str) and _is_web_url(value.strip()):
            targets.append(value.strip()[:2048])
        if name in _HIDDEN_TAGS:
            hidden.append(tag)
        elif name == "br":
            breaks.append(tag)
        elif name in _BLOCK_TAGS:
            blocks.append(tag)

    for tag in breaks:
        tag.replace_with("\n")
    for tag in blocks:
        tag.insert_before("\n")
        tag.insert_after("\n")
    for tag in hidden:
        tag.decompose()
    return tidy_text(soup.get_text()), targets


def tidy_text(text: str) -> str:
    """Plain text with one kind of newline, no control characters and no runs of blanks."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _TEXT_CONTROLS.sub("", text)
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def one_line(text: str) -> str:
    """A header value on one line: folded lines, CR/LF and other controls become one space."""
    text = _HEADER_CONTROLS.sub(" ", text)
    return " ".join(text.split())[:MAX_HEADER_CHARS]


def decode_bytes(payload: bytes, charset: str | None) -> tuple[str, str | None]:
    """Decode text whatever its declared charset; say what went wrong with the charset, if anything.

    A known charset decodes strictly; when the bytes do not fit it, they are read as UTF-8 if
    that decodes cleanly, else with replacement characters. An unknown charset, or none, is
    read as UTF-8 when that decodes cleanly, else as Latin-1, which never fails.
    """
    name = (charset or "").strip().strip("\"'").lower()
    codec = _text_codec(name) if name else None
    if codec is not None and codec != "ascii":
        try:
            return payload.decode(codec), None
        except UnicodeDecodeError:
            pass

    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        if codec is not None and codec != "ascii":
            return payload.decode(codec, errors="replace"), f"bytes do not fit charset {name!r}"
        text = payload.decode("latin-1")
    if codec is None and name:
        return text, f"unknown charset {name!r}"
    if codec is not None and codec != "ascii" and codec != "utf-8":
        return text, f"bytes do not fit charset {name!r}"
    return text, None


def _text_codec(name: str) -> str | None:
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    return info.name if getattr(info, "_is_text_encoding", True) else None


def unsurrogate(text: str) -> str:
    """Text where raw 8-bit bytes, kept by the parser as surrogates, are decoded for real."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", errors="surrogateescape")
        return decode_bytes(raw, None)[0]
    return text


def header_values(message: EmailMessage, name: str) -> list[str]:
    """Every decoded value of header ``name``, each on one line, tolerating bogus encodings.

    Raw values are decoded here, word by word, rather than by the parser's header classes:
    that is several times faster and never raises on a hostile value.
    """
    wanted = name.lower()
    values = [_decode_words(raw) for key, raw in _raw_items(message) if key.lower() == wanted]
    return [one_line(unsurrogate(value)) for value in values]


def header_value(message: EmailMessage, name: str) -> str:
    """The first decoded value of header ``name``, or an empty string."""
    values = header_values(message, name)
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
    """Display name and lower-case ``user@domain`` of an address header, as far as readable."""
    if not value:
        return "", None
    name, address = parseaddr(value)
    if "@" not in address:
        angled = _ANGLED_ADDRESS.findall(value)
        bare = angled[-1:] or _BARE_ADDRESS.findall(value)[:1]
        address = bare[0] if bare else ""
        name = value.split("<", 1)[0].strip().strip('"') if angled else ""
    address = address.strip().strip("<>").lower()
    return one_line(name), (address if "@" in address else None)


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

    display_domain = None
    for match in _DOMAIN_IN_NAME.finditer(from_name.lower()):
        candidate, tld = match.group(1), match.group(2)
        if len(tld) != 2 and tld not in _COMMON_TLDS:
            continue
        if from_domain is None or base_domain(candidate) != base_domain(from_domain):
            display_domain = candidate
            break

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


def message_date(message: EmailMessage) -> datetime | None:
    """The Date header as an aware datetime, else the date the topmost Received hop stamped.

    A date without a zone is taken as UTC.
    """
    when = parse_date(header_value(message, "Date"))
    if when is None:
        received = header_value(message, "Received")
        if ";" in received:
            when = parse_date(received.rsplit(";", 1)[1])
    return when


def parse_date(text: str) -> datetime | None:
    """An RFC 2822 date as an aware datetime, or None when it cannot be read."""
    if not text or not text.strip():
        return None
    try:
        when = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def extract_body(message: EmailMessage, max_part_bytes: int) -> Body:
    """Text, URLs and attachments of a message, walking its MIME tree once."""
    body = Body()
    _walk(message, body, 0, max_part_bytes)
    body.urls = list(dict.fromkeys(body.urls))[:MAX_URLS]
    return body


def _walk(part: EmailMessage, body: Body, depth: int, max_part_bytes: int) -> None:
    body.parts += 1
    if body.parts == MAX_PARTS + 1:
        body.notes.append(
            Note(
                "too-many-parts",
                Severity.LOW,
                f"only the first {MAX_PARTS} MIME parts were read",
                {},
            )
        )
    if body.parts > MAX_PARTS:
        return
    if depth > MAX_DEPTH:
        body.notes.append(
            Note(
                "mime-too-deep",
                Severity.LOW,
                f"MIME parts nested deeper than {MAX_DEPTH} were not read",
                {},
            )
        )
        return

    content_type = part.get_content_type()
    if part.is_multipart():
        children = [c for c in part.get_payload() if isinstance(c, EmailMessage)]
        if content_type.startswith("message/") and part.get_content_disposition() == "attachment":
            body.attachments.append(Attachment(_filename(part), content_type, _size(part)))
        if content_type == "multipart/alternative":
            _pick_alternative(children, body, depth, max_part_bytes)
        else:
            for child in children:
                _walk(child, body, depth + 1, max_part_bytes)
        return

    if content_type.startswith("multipart/"):
        body.notes.append(
            Note(
                "broken-mime-boundary",
                Severity.LOW,
                f"{content_type} part has no readable boundary; read as text",
                {"content_type": content_type},
            )
        )
        content_type = "text/plain"

    filename = _filename(part)
    disposition = part.get_content_disposition()
    named = filename is not None and disposition != "inline"
    if disposition == "attachment" or named or not content_type.startswith("text/"):
        payload = part.get_payload(decode=True)
        size = len(payload) if isinstance(payload, bytes) else 0
        body.attachments.append(Attachment(filename, content_type, size))
        return

    _read_text_part(part, content_type, body, max_part_bytes)


def _pick_alternative(
    children: list[EmailMessage], body: Body, depth: int, max_part_bytes: int
) -> None:
    options = []
    for child in children:
        option = Body(parts=body.parts)
        _walk(child, option, depth + 1, max_part_bytes)
        body.parts = option.parts
        body.urls.extend(option.urls)
        body.attachments.extend(option.attachments)
        body.notes.extend(option.notes)
        options.append(option)

    filled = [option for option in options if option.text.strip()]
    chosen = next((o for o in filled if not o.html), filled[0] if filled else None)
    if chosen is not None:
        body.texts.extend(chosen.texts)
        body.html = body.html or chosen.html


def _filename(part: EmailMessage) -> str | None:
    try:
        name = part.get_filename()
    except Exception:  # noqa: BLE001 - a bogus parameter must not drop the message
        name = None
    return one_line(unsurrogate(str(name)))[:255] if name else None


def _size(part: EmailMessage) -> int:
    try:
        return len(part.as_bytes())
    except Exception:  # noqa: BLE001 - the size of a broken attached message is unknown
        return 0


def _read_text_part(part: EmailMessage, content_type: str, body: Body, max_part_bytes: int) -> None:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        payload = b""
    if len(payload) > max_part_bytes:
        body.notes.append(
            Note(
                "truncated-part",
                Severity.LOW,
                f"{content_type} part cut to {max_part_bytes} bytes",
                {"bytes": len(payload), "limit": max_part_bytes},
            )
        )
        payload = payload[:max_part_bytes]

    charset = part.get_content_charset()
    text, fallback = decode_bytes(payload, charset)
    if fallback is not None:
        body.notes.append(
            Note(
                "charset-fallback",
                Severity.INFO,
                f"{fallback}; decoded by fallback",
                {"charset": part.get_content_charset()},
            )
        )

    if content_type == "text/html":
        text, targets = html_to_text(text)
        body.urls.extend(targets)
        body.html = True
    else:
        text = tidy_text(text)
    body.urls.extend(extract_urls(text))
    body.texts.append(text)


def _is_web_url(value: str) -> bool:
    lowered = value[:8].lower()
    return lowered.startswith(("http://", "https://", "ftp://", "www."))
