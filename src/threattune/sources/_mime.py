"""MIME walk for mail ingestion: body text, URLs and attachments of one parsed message.

Attachments are decoded in memory just far enough to know their size; they are never written
out or opened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import policy
from email.message import Message as EmailMessage
from email.parser import BytesParser
from typing import Any, NamedTuple

from threattune.findings import Severity
from threattune.sources._text import (
    decode_bytes,
    extract_urls,
    html_to_text,
    one_line,
    tidy_text,
    unsurrogate,
)

__all__ = ["Attachment", "Body", "Note", "extract_body"]

MAX_URLS = 500
MAX_PARTS = 500
MAX_DEPTH = 32

_DELIMITER = re.compile(rb"^--([!#-~]{1,70}?)[ \t]*\r?$", re.MULTILINE)
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


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


@dataclass
class Body:
    """What the walk over a message's parts collected."""

    texts: list[str] = field(default_factory=list)
    html: bool = False
    urls: list[str] = field(default_factory=list)
    shown_links: list[tuple[str, str]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    parts: int = 0

    def note(self, kind: str, severity: Severity, message: str, **evidence: Any) -> None:
        """Keep something noticed about this message."""
        self.notes.append(Note(kind, severity, message, evidence))

    @property
    def text(self) -> str:
        return "\n\n".join(t for t in self.texts if t)


def extract_body(message: EmailMessage, max_part_bytes: int) -> Body:
    """Text, URLs and attachments of a message, walking its MIME tree once.

    Of a multipart/alternative, the text comes from the first plain part that has any, else
    from the HTML one; URLs come from all of them. A message forwarded inline is read as part of
    the body. A part sent as an attachment (a disposition of ``attachment``, a file name, or a
    type other than text, a message forwarded as an attachment included) is measured, not read.
    """
    body = Body()
    _walk(message, body, 0, max_part_bytes)
    body.urls = list(dict.fromkeys(body.urls))[:MAX_URLS]
    body.shown_links = list(dict.fromkeys(body.shown_links))[:MAX_URLS]
    return body


def _walk(part: EmailMessage, body: Body, depth: int, max_part_bytes: int) -> None:
    body.parts += 1
    if body.parts == MAX_PARTS + 1:
        body.note("too-many-parts", Severity.LOW, f"only the first {MAX_PARTS} parts were read")
    if body.parts > MAX_PARTS:
        return
    if depth > MAX_DEPTH:
        body.note("mime-too-deep", Severity.LOW, f"parts nested over {MAX_DEPTH} deep not read")
        return

    content_type = part.get_content_type()
    if part.is_multipart():
        if content_type.startswith("message/") and part.get_content_disposition() == "attachment":
            body.attachments.append(Attachment(_filename(part), content_type, _size(part)))
            return
        children = [c for c in part.get_payload() if isinstance(c, EmailMessage)]
        if content_type == "multipart/alternative":
            _pick_alternative(children, body, depth, max_part_bytes)
        else:
            for child in children:
                _walk(child, body, depth + 1, max_part_bytes)
        return

    if content_type.startswith("multipart/"):
        salvaged = _salvage_multipart(part)
        how = "parts found by the boundary they use" if salvaged else "read as text"
        why = f"{content_type} part has no part with its declared boundary; {how}"
        body.note("broken-mime-boundary", Severity.LOW, why, content_type=content_type)
        if salvaged is not None:
            _walk(salvaged, body, depth + 1, max_part_bytes)
            return
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


def _salvage_multipart(part: EmailMessage) -> EmailMessage | None:
    """The parts of a multipart body whose delimiter lines use an undeclared boundary."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return None
    found = _DELIMITER.search(payload)
    if found is None:
        return None
    head = b'Content-Type: multipart/mixed; boundary="' + found.group(1) + b'"\n\n'
    rebuilt = BytesParser(policy=policy.default).parsebytes(head + payload)
    return rebuilt if rebuilt.is_multipart() and rebuilt.get_payload() else None


def _pick_alternative(
    children: list[EmailMessage], body: Body, depth: int, max_part_bytes: int
) -> None:
    options = []
    for child in children:
        option = Body(parts=body.parts)
        _walk(child, option, depth + 1, max_part_bytes)
        body.parts = option.parts
        body.urls.extend(option.urls)
        body.shown_links.extend(option.shown_links)
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
        why = f"{content_type} part of {len(payload)} bytes cut to {max_part_bytes}"
        body.note("truncated-part", Severity.LOW, why, bytes=len(payload), limit=max_part_bytes)
        payload = payload[:max_part_bytes]

    charset = part.get_content_charset()
    text, problem = decode_bytes(payload, charset)
    if problem is not None:
        body.note(
            "charset-fallback", Severity.INFO, f"{problem}; decoded by fallback", charset=charset
        )
    if _unreadable(text):
        why = f"{content_type} part decodes to binary junk; its text was dropped"
        body.note("undecodable-part", Severity.LOW, why, bytes=len(payload))
        return

    if content_type == "text/html":
        text, targets = html_to_text(text, shown_links=body.shown_links)
        body.urls.extend(targets)
        body.html = True
    else:
        text = tidy_text(text)
    body.urls.extend(extract_urls(text))
    body.texts.append(text)


def _unreadable(text: str) -> bool:
    """Whether decoded text is mostly replacement and control characters."""
    sample = text[:4096]
    bad = sample.count("\ufffd") + len(_CONTROLS.findall(sample))
    return bool(sample) and bad * 4 > len(sample)
