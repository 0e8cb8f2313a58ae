"""Text helpers for mail ingestion: decoding, HTML to text, URL extraction and defanging.

Everything here only parses strings: HTML is turned into text without running anything and URLs
are never fetched.
"""

from __future__ import annotations

import codecs
import re
import warnings

from bs4 import BeautifulSoup, CData, MarkupResemblesLocatorWarning, NavigableString
from bs4.element import PageElement, Tag

__all__ = [
    "decode_bytes",
    "defang",
    "extract_urls",
    "html_to_text",
    "one_line",
    "tidy_text",
    "unsurrogate",
]

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
_BLOCK_TAGS = frozenset(
    "p div tr li ul ol table h1 h2 h3 h4 h5 h6 blockquote pre hr section article header footer "
    "center form".split()
)
_HIDDEN_TAGS = frozenset(("script", "style", "template"))
_URL_ATTRIBUTES = {"a": "href", "area": "href", "form": "action", "iframe": "src", "frame": "src"}
_VISIBLE_STRINGS = (NavigableString, CData)
_LOOKS_LIKE_ADDRESS = re.compile(r"(?i)\b(?:[a-z0-9-]+\.)+[a-z]{2,}\b")
_REFRESH_URL = re.compile(r"url\s*=\s*['\"]?([^'\";\s]+)", re.IGNORECASE)


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


def html_to_text(
    html: str, *, shown_links: list[tuple[str, str]] | None = None
) -> tuple[str, list[str]]:
    """Visible text of an HTML body, and the link, form and frame targets it points at.

    Scripts, styles and comments are dropped as markup; nothing is run or fetched. The tree
    is walked once with an explicit stack, so deeply nested hostile markup costs linear time.
    ``shown_links``, when given, receives ``(text shown, target)`` for each link whose text
    reads like an address, the pairs a lure uses to show one site and lead to another.

    >>> html_to_text('<p>Hi<script>steal()</script></p><a href="http://x.example">go</a>')
    ('Hi\\ngo', ['http://x.example'])
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        soup = BeautifulSoup(html, "html.parser")

    pieces: list[str] = []
    targets: list[str] = []
    stack: list[tuple[PageElement, bool]] = [(soup, False)]
    while stack:
        node, leaving = stack.pop()
        if not isinstance(node, Tag):
            if type(node) in _VISIBLE_STRINGS:
                pieces.append(str(node))
            continue
        name = node.name
        if leaving or name == "br":
            pieces.append("\n")
            continue
        if name in _HIDDEN_TAGS or (name == "title" and not node.find(True)):
            continue

        target = _link_target(node)
        if target is not None:
            targets.append(target)
            if shown_links is not None and name == "a":
                shown = one_line(node.get_text(" ", strip=True))[:200]
                if _LOOKS_LIKE_ADDRESS.search(shown):
                    shown_links.append((shown, target))
        if name in _BLOCK_TAGS:
            pieces.append("\n")
            stack.append((node, True))
        stack.extend((child, False) for child in reversed(node.contents))
    return tidy_text("".join(pieces)), targets


def _link_target(tag: Tag) -> str | None:
    """The web URL a link, form, frame or refresh tag points at, if any."""
    attribute = _URL_ATTRIBUTES.get(tag.name)
    value = tag.get(attribute) if attribute else None
    if tag.name == "meta":
        content = tag.get("content")
        found = _REFRESH_URL.search(content) if isinstance(content, str) else None
        value = found.group(1) if found else None
    if isinstance(value, str) and _is_web_url(value.strip()):
        return value.strip()[:2048]
    return None


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
    """Decode text whatever its declared charset; say what was wrong with the charset, if anything.

    A known charset decodes strictly. Bytes that do not fit it, or an unknown charset, or none,
    are read as UTF-8 when that decodes cleanly; else with the declared charset and replacement
    characters when most non-ASCII characters still decode; else as Latin-1, which never fails
    (mail labelled UTF-8 is most often Windows Latin text).

    >>> decode_bytes("café".encode("latin-1"), "x-unknown")
    ('café', "unknown charset 'x-unknown'")
    """
    name = (charset or "").strip().strip("\"'").lower()
    codec = _text_codec(name) if name else None
    if codec == "ascii":
        name, codec = "", None
    if codec is not None:
        try:
            return payload.decode(codec), None
        except UnicodeDecodeError:
            pass

    problem = None
    if name:
        problem = f"bytes do not fit charset {name!r}" if codec else f"unknown charset {name!r}"
    try:
        return payload.decode("utf-8"), problem
    except UnicodeDecodeError:
        pass
    if codec is not None:
        text = payload.decode(codec, errors="replace")
        bad = text.count("\ufffd")
        if sum(1 for char in text if char > "\x7f") > 2 * bad:
            return text, problem
    return payload.decode("latin-1"), problem


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


def _is_web_url(value: str) -> bool:
    lowered = value[:8].lower()
    return lowered.startswith(("http://", "https://", "ftp://", "www."))
