"""The public text corpora's conventions: file naming, labels, subject-and-body files, CSV rows.

Enron-Spam and Ling-Spam keep only a ``Subject:`` line and the body of each message, and name
the label in the file name. The Nazario phishing2/3 extract does the same with one HTML or text
part. The Nazario 2015-2022 CSV has one message per row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from threattune.sources import _headers, _text
from threattune.sources._message import MailSource, Message

__all__ = [
    "CSV_COLUMNS",
    "HAM",
    "PHISHING",
    "SPAM",
    "csv_message",
    "name_label",
    "stem",
    "subject_body_message",
    "text_layout",
]

HAM, SPAM, PHISHING = "ham", "spam", "phishing"
CSV_COLUMNS = frozenset({"sender", "receiver", "date", "subject", "body", "label"})
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz")
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz")

_LABEL_PART = re.compile(r"^(?:easy_|hard_)?(ham|spam|phishing)(?:_?\d+)?$", re.IGNORECASE)
_ENRON_NAME = re.compile(r"(?:^|/)\d+\.(\d{4})-\d\d-\d\d\.[\w-]+\.(ham|spam)\.txt$", re.I)
_LINGSPAM_NAME = re.compile(r"(?:^|/)(spmsg\w*|\d+-\d+msg\d+)\.txt$", re.IGNORECASE)
_NAZARIO_TEXT_NAME = re.compile(r"(?:^|/)phishing\d+/\d+_(?:true|false)\.txt$", re.IGNORECASE)
_HTML_HINT = re.compile(r"<(html|body|div|p|br|table|a\s|font|span|td)\b", re.IGNORECASE)


def stem(name: str) -> str:
    """A file name without its mail, archive and compression suffixes."""
    suffixes = (*ARCHIVE_SUFFIXES, *COMPRESSED_SUFFIXES, ".mbox", ".eml", ".txt", ".csv")
    changed = True
    while changed:
        changed = False
        for suffix in suffixes:
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                name, changed = name[: -len(suffix)], True
    return name


def name_label(parts: Iterable[str]) -> str | None:
    """The label that folder or file names give (``spam``, ``easy_ham``, ``phishing0``).

    The innermost name that gives one wins.
    """
    label = None
    for part in parts:
        if match := _LABEL_PART.match(part):
            label = match.group(1).lower()
    return label


def text_layout(where: str, forced: str | None) -> str | None:
    """Which subject-and-body layout a file follows, by its path; None for raw mail."""
    if forced in ("enron", "lingspam") and where.lower().endswith(".txt"):
        return forced
    if _ENRON_NAME.search(where):
        return "enron"
    if _LINGSPAM_NAME.search(where):
        return "lingspam"
    if _NAZARIO_TEXT_NAME.search(where):
        return "nazario-text"
    return None


def subject_body_message(
    raw: bytes, where: str, source: MailSource, label: str | None, layout: str, max_bytes: int
) -> Message | None:
    """A text-only message from a ``Subject:`` line and a body; None for an empty file."""
    if not raw.strip():
        return None
    text = _text.decode_bytes(raw[:max_bytes], None)[0]
    first, _, rest = text.partition("\n")
    subject = ""
    if first.lower().startswith("subject:"):
        subject, text = first[len("subject:") :], rest

    urls: list[str] = []
    html = layout == "nazario-text" and _HTML_HINT.search(text) is not None
    if html:
        text, urls = _text.html_to_text(text)
    text = _text.tidy_text(text)
    enron = _ENRON_NAME.search(where)
    return Message(
        source=source,
        year=int(enron.group(1)) if enron else None,
        subject=_text.one_line(subject),
        text=text,
        html=html,
        urls=tuple(dict.fromkeys([*urls, *_text.extract_urls(text)])),
        label=_layout_label(where, layout) or label,
    )


def csv_message(row: dict[str, str], source: MailSource) -> Message | None:
    """A text-only message from a Nazario-style CSV row; None when it has no subject or body."""
    body = row.get("body") or ""
    subject = row.get("subject") or ""
    if not body.strip() and not subject.strip():
        return None

    name, address = _headers.parse_address(row.get("sender") or "")
    date = _headers.parse_date(row.get("date") or "")
    return Message(
        source=source,
        date=date,
        year=_headers.plausible_year(date),
        from_name=name,
        from_address=address,
        subject=_text.one_line(subject),
        text=_text.tidy_text(body),
        urls=tuple(dict.fromkeys(_text.extract_urls(body))),
        label=_csv_label(row.get("label") or ""),
    )


def _layout_label(where: str, layout: str) -> str | None:
    if layout == "enron" and (match := _ENRON_NAME.search(where)):
        return match.group(2).lower()
    if layout == "lingspam":
        return SPAM if where.rsplit("/", 1)[-1].lower().startswith("spmsg") else HAM
    if layout == "nazario-text":
        return PHISHING
    return None


def _csv_label(value: str) -> str | None:
    value = value.strip().lower()
    if value in ("1", PHISHING):
        return PHISHING
    if value in ("0", HAM, "legitimate"):
        return HAM
    return SPAM if value == SPAM else None
