"""Mail ingestion: raw mail in, parsed messages with the signals an analyst weighs out.

Reads mbox files, single ``.eml`` files, folders of them, tar archives (plain, gzip, bzip2 or
xz, read member by member, nested archives to a bounded depth) and the public text corpora
(Enron-Spam, Ling-Spam, the Nazario 2015-2022 CSV). Every reader is a generator, so memory
stays flat however large the corpus. A message that cannot be read is skipped and reported as a
:class:`~threattune.findings.Finding` naming its file and position; the rest goes on.

Attachments are measured, never written out or opened, and URLs are never fetched.

>>> reader = MailReader()
>>> raw = b"From: IT <it@example.org>\\nSubject: Reset\\n\\nGo to http://evil.example/reset\\n"
>>> message = reader.parse(raw)
>>> message.subject, message.defanged_urls
('Reset', ('hxxp://evil[.]example/reset',))
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import logging
import lzma
import os
import re
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import Message as EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import IO, Any

from threattune.errors import DataError
from threattune.findings import Finding, Severity
from threattune.sources import _mime
from threattune.sources._mime import Attachment, HeaderSignals, defang, extract_urls, html_to_text

__all__ = [
    "Attachment",
    "HeaderSignals",
    "MailReader",
    "MailSource",
    "Message",
    "defang",
    "extract_urls",
    "html_to_text",
    "parse_message",
    "read_eml",
    "read_eml_folder",
    "read_enron",
    "read_lingspam",
    "read_mbox",
    "read_messages",
    "read_nazario_csv",
    "read_tar",
]

logger = logging.getLogger(__name__)

HAM, SPAM, PHISHING = "ham", "spam", "phishing"
MB = 1024 * 1024

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz")
_COMPRESSED = (".gz", ".bz2", ".xz")
_DOCUMENT_NAMES = re.compile(
    r"^(readme.*|summary\.txt|provenance\.md|sha\d*sums|md5sums|license.*|copying.*"
    r"|manifest\.csv|index\.csv|\..*)$|\.(md|json|ya?ml|py|sh|html?)$",
    re.IGNORECASE,
)
_LABEL_PART = re.compile(r"^(?:easy_|hard_)?(ham|spam|phishing)(?:_?\d+)?$", re.IGNORECASE)
_ENRON_NAME = re.compile(r"(?:^|/)\d+\.(\d{4})-\d\d-\d\d\.[\w-]+\.(ham|spam)\.txt$", re.I)
_LINGSPAM_NAME = re.compile(r"(?:^|/)(spmsg\w*|\d+-\d+msg\d+)\.txt$", re.IGNORECASE)
_NAZARIO_TEXT_NAME = re.compile(r"(?:^|/)phishing\d+/\d+_(?:true|false)\.txt$", re.IGNORECASE)
_ENVELOPE = re.compile(rb"^From \S*\s+.*\d\d:\d\d")
_ESCAPED_FROM = re.compile(rb"^>(>*From )")
_MAIL_HEADERS = frozenset(
    "from to cc subject date message-id received return-path reply-to sender content-type "
    "mime-version delivered-to x-mailer authentication-results".split()
)
_PSEUDO_MESSAGE = "FOLDER INTERNAL DATA"
_CSV_COLUMNS = {"sender", "receiver", "date", "subject", "body", "label"}


class _Skip(Exception):
    """A message that cannot be used, with the finding that says why."""

    def __init__(self, kind: str, message: str, severity: Severity = Severity.MEDIUM) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.severity = severity


@dataclass(frozen=True, slots=True)
class MailSource:
    """Where a message came from: a file, the archive member inside it, its place in a mailbox.

    ``member`` joins nested archive members with ``!``; ``index`` is the 1-based message number
    in an mbox; ``line`` the 1-based line where the message starts in an mbox or CSV.
    """

    path: str
    member: str | None = None
    index: int | None = None
    line: int | None = None

    def __str__(self) -> str:
        text = self.path + (f"!{self.member}" if self.member else "")
        if self.index is not None:
            text += f", message {self.index}"
        if self.line is not None:
            text += f", line {self.line}"
        return text

    def inside(self, member: str) -> MailSource:
        """The source of an archive member below this one."""
        return MailSource(self.path, f"{self.member}!{member}" if self.member else member)

    def evidence(self) -> dict[str, Any]:
        """The known parts of the position, for a finding's evidence."""
        parts = {"path": self.path, "member": self.member, "index": self.index, "line": self.line}
        return {key: value for key, value in parts.items() if value is not None}


@dataclass(frozen=True, slots=True)
class Message:
    """One parsed message: who sent it, what it says, where it links, what it carries.

    ``signals`` is None for text-only sources, which keep no headers. ``year`` is the year of
    ``date``, or the year a text corpus records in its file names. ``findings`` lists what was
    repaired or cut while parsing (charset fallbacks, truncated parts, MIME defects).
    """

    source: MailSource
    message_id: str | None = None
    date: datetime | None = None
    year: int | None = None
    from_name: str = ""
    from_address: str | None = None
    reply_to: str | None = None
    return_path: str | None = None
    subject: str = ""
    text: str = ""
    html: bool = False
    urls: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    signals: HeaderSignals | None = None
    label: str | None = None
    findings: tuple[Finding, ...] = field(default=(), compare=False)

    @property
    def defanged_urls(self) -> tuple[str, ...]:
        """The URLs, defanged for display (``hxxp://``, ``[.]``)."""
        return tuple(defang(url) for url in self.urls)


class MailReader:
    """Reads mail from files, folders and archives, keeping what it had to skip in ``issues``.

    Parameters
    ----------
    max_message_bytes:
        A message, archive member or single file larger than this is skipped with a finding.
    max_part_bytes:
        A text or HTML part larger than this is cut to it, with a finding.
    max_archive_depth:
        How many archives inside an archive are opened; deeper ones are skipped.
    on_issue:
        Called with each finding as it happens, besides collecting it in ``issues``.

    >>> reader = MailReader()
    >>> list(reader.read_bytes(b"\\x00\\x01 not mail", name="blob.eml"))
    []
    >>> reader.issues[0].kind
    'not-mail'
    """

    def __init__(
        self,
        *,
        max_message_bytes: int = 25 * MB,
        max_part_bytes: int = 2 * MB,
        max_archive_depth: int = 2,
        on_issue: Callable[[Finding], None] | None = None,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self.max_part_bytes = max_part_bytes
        self.max_archive_depth = max_archive_depth
        self.on_issue = on_issue
        self.issues: list[Finding] = []

    def read(self, path: str | Path, *, label: str | None = None) -> Iterator[Message]:
        """Every message under ``path``, whatever it is: mbox, .eml, folder, archive or corpus.

        ``label`` is given to messages whose source does not name one. Sources name labels by
        folder or file name (``ham``, ``spam``, ``easy_ham``, ``phishing0``), by the Enron and
        Ling-Spam file naming, or by the CSV ``label`` column.
        """
        path = Path(path)
        if not path.exists():
            raise DataError(
                "mail source not found",
                path=path,
                fix="point at an mbox, .eml, folder or archive that exists (see THREATTUNE_DATA)",
            )
        if path.is_dir():
            return self._read_folder(path, label, None)
        return self._read_file(path, _name_label([_stem(path.name)]) or label, None)

    def read_mbox(self, path: str | Path, *, label: str | None = None) -> Iterator[Message]:
        """Messages of an mbox file, plain or compressed (``.gz``, ``.bz2``, ``.xz``)."""
        path = Path(path)
        label = _name_label([_stem(path.name)]) or label
        with _open_file(path) as stream:
            yield from self._read_mbox(
                _decompressed(stream, path.name), MailSource(str(path)), label
            )

    def read_eml(self, path: str | Path, *, label: str | None = None) -> Iterator[Message]:
        """The one message of an ``.eml`` (or raw RFC 822) file; none if it is unreadable."""
        path = Path(path)
        with _open_file(path) as stream:
            raw = self._bounded(stream, MailSource(str(path)))
        if raw is not None:
            yield from self._from_bytes(raw, path.name, MailSource(str(path)), label, "mail")

    def read_eml_folder(self, path: str | Path, *, label: str | None = None) -> Iterator[Message]:
        """Messages in a folder and its sub-folders, in name order, archives included."""
        return self._read_folder(Path(path), label, None)

    def read_tar(self, path: str | Path, *, label: str | None = None) -> Iterator[Message]:
        """Messages in a tar archive, read as a stream one member at a time."""
        path = Path(path)
        label = _name_label([_stem(path.name)]) or label
        with _open_file(path) as stream:
            yield from self._read_tar(stream, MailSource(str(path)), label, 0, None)

    def read_enron(self, path: str | Path) -> Iterator[Message]:
        """Enron-Spam messages (an ``enronN`` archive or folder): subject and body, labelled."""
        return self._read_corpus(Path(path), "enron")

    def read_lingspam(self, path: str | Path) -> Iterator[Message]:
        """Ling-Spam messages (archive or folder): subject and body; ``spmsg*`` files are spam."""
        return self._read_corpus(Path(path), "lingspam")

    def read_nazario_csv(self, path: str | Path) -> Iterator[Message]:
        """Rows of the Nazario 2015-2022 CSV (plain or compressed) as text-only messages."""
        path = Path(path)
        with _open_file(path) as stream:
            yield from self._read_csv(_decompressed(stream, path.name), MailSource(str(path)))

    def read_bytes(
        self, raw: bytes, *, name: str = "<bytes>", label: str | None = None
    ) -> Iterator[Message]:
        """The message in ``raw``, or nothing (with an issue) when it is not readable mail."""
        return self._from_bytes(raw, name, MailSource(name), label, "mail")

    def parse(
        self, raw: bytes, *, source: MailSource | None = None, label: str | None = None
    ) -> Message | None:
        """Parse one raw RFC 822 message; None (with an issue) when it cannot be used."""
        return next(self._from_bytes(raw, "", source or MailSource("<bytes>"), label, "mail"), None)

    def _report(
        self,
        kind: str,
        severity: Severity,
        source: MailSource,
        message: str,
        **evidence: Any,
    ) -> Finding:
        finding = Finding(kind, severity, str(source), message, {**source.evidence(), **evidence})
        self.issues.append(finding)
        log = logger.warning if severity >= Severity.MEDIUM else logger.debug
        log("%s: %s", finding.subject, message)
        if self.on_issue is not None:
            self.on_issue(finding)
        return finding

    def _read_corpus(self, path: Path, layout: str) -> Iterator[Message]:
        if path.is_dir():
            yield from self._read_folder(path, None, layout)
            return
        with _open_file(path) as stream:
            yield from self._read_stream(stream, path.name, MailSource(str(path)), None, 0, layout)

    def _read_folder(self, root: Path, label: str | None, layout: str | None) -> Iterator[Message]:
        for folder, subfolders, files in os.walk(root):
            subfolders.sort()
            for name in sorted(files):
                path = Path(folder, name)
                parts = [*path.relative_to(root).parent.parts, _stem(name)]
                yield from self._read_file(path, _name_label(parts) or label, layout)

    def _read_file(self, path: Path, label: str | None, layout: str | None) -> Iterator[Message]:
        source = MailSource(str(path))
        if _DOCUMENT_NAMES.search(path.name):
            logger.debug("%s: documentation, not mail; skipped", source)
            return
        try:
            with open(path, "rb") as stream:
                yield from self._read_stream(stream, path.name, source, label, 0, layout)
        except OSError as exc:
            self._report("unreadable-file", Severity.HIGH, source, f"cannot read file: {exc}")

    def _read_stream(
        self,
        stream: IO[bytes],
        name: str,
        source: MailSource,
        label: str | None,
        depth: int,
        layout: str | None,
    ) -> Iterator[Message]:
        lower = name.lower()
        if lower.endswith(_TAR_SUFFIXES):
            yield from self._read_tar(stream, source, label, depth, layout)
        elif lower.endswith(_COMPRESSED):
            inner = name.rsplit(".", 1)[0]
            try:
                yield from self._read_stream(
                    _decompressed(stream, name), inner, source, label, depth, layout
                )
            except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
                self._report(
                    "unreadable-archive", Severity.HIGH, source, f"cannot decompress: {exc}"
                )
        elif lower.endswith(".mbox") or lower == "mbox":
            yield from self._read_mbox(stream, source, label)
        elif lower.endswith(".csv"):
            yield from self._read_csv(stream, source)
        elif lower.endswith(".zip"):
            self._report(
                "unsupported-archive", Severity.MEDIUM, source, "zip archives are not read"
            )
        else:
            raw = self._bounded(stream, source)
            if raw is not None:
                yield from self._from_bytes(raw, name, source, label, layout)

    def _bounded(self, stream: IO[bytes], source: MailSource) -> bytes | None:
        raw = stream.read(self.max_message_bytes + 1)
        if len(raw) > self.max_message_bytes:
            self._report(
                "oversized-message",
                Severity.MEDIUM,
                source,
                f"larger than {self.max_message_bytes} bytes; skipped",
                limit=self.max_message_bytes,
            )
            return None
        return raw

    def _read_tar(
        self,
        stream: IO[bytes],
        source: MailSource,
        label: str | None,
        depth: int,
        layout: str | None,
    ) -> Iterator[Message]:
        try:
            with tarfile.open(fileobj=stream, mode="r|*") as archive:
                for member in archive:
                    if member.isfile():
                        yield from self._read_member(archive, member, source, label, depth, layout)
        except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
            self._report("unreadable-archive", Severity.HIGH, source, f"cannot read archive: {exc}")

    def _read_member(
        self,
        archive: tarfile.TarFile,
        member: tarfile.TarInfo,
        outer: MailSource,
        label: str | None,
        depth: int,
        layout: str | None,
    ) -> Iterator[Message]:
        source = outer.inside(member.name)
        base = member.name.rsplit("/", 1)[-1]
        parts = [*member.name.split("/")[:-1], _stem(base)]
        label = _name_label(parts) or label
        if _DOCUMENT_NAMES.search(base):
            logger.debug("%s: documentation, not mail; skipped", source)
            return
        if member.size > self.max_message_bytes:
            self._report(
                "oversized-member",
                Severity.MEDIUM,
                source,
                f"archive member of {member.size} bytes is over {self.max_message_bytes}; skipped",
                bytes=member.size,
                limit=self.max_message_bytes,
            )
            return
        if base.lower().endswith(_TAR_SUFFIXES) and depth >= self.max_archive_depth:
            self._report(
                "archive-too-deep",
                Severity.MEDIUM,
                source,
                f"archive nested deeper than {self.max_archive_depth} levels; skipped",
                depth=depth + 1,
            )
            return

        stream = archive.extractfile(member)
        if stream is None:
            return
        yield from self._read_stream(stream, base, source, label, depth + 1, layout)

    def _read_mbox(
        self, stream: IO[bytes], source: MailSource, label: str | None
    ) -> Iterator[Message]:
        for index, line, raw in self._split_mbox(stream, source):
            position = MailSource(source.path, source.member, index, line)
            yield from self._from_bytes(raw, "", position, label, "mail")

    def _split_mbox(
        self, stream: IO[bytes], source: MailSource
    ) -> Iterator[tuple[int, int, bytes]]:
        lines: list[bytes] = []
        size = 0
        index = 1
        start = 1
        previous_blank = True
        for number, line in enumerate(stream, start=1):
            if previous_blank and _ENVELOPE.match(line) and any(x.strip() for x in lines):
                yield from self._mbox_message(source, index, start, size, lines)
                index += 1
                lines, size, start = [], 0, number
            size += len(line)
            if size <= self.max_message_bytes:
                lines.append(_ESCAPED_FROM.sub(rb"\1", line))
            previous_blank = not line.strip()
        if any(x.strip() for x in lines):
            yield from self._mbox_message(source, index, start, size, lines)

    def _mbox_message(
        self, source: MailSource, index: int, line: int, size: int, lines: list[bytes]
    ) -> Iterator[tuple[int, int, bytes]]:
        if size <= self.max_message_bytes:
            yield index, line, b"".join(lines)
            return
        self._report(
            "oversized-message",
            Severity.MEDIUM,
            MailSource(source.path, source.member, index, line),
            f"message of {size} bytes is over {self.max_message_bytes}; skipped",
            bytes=size,
            limit=self.max_message_bytes,
        )

    def _read_csv(self, stream: IO[bytes], source: MailSource) -> Iterator[Message]:
        text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")
        try:
            yield from self._csv_rows(csv.reader(text), source)
        finally:
            text.detach()

    def _csv_rows(self, rows: Any, source: MailSource) -> Iterator[Message]:
        try:
            header = [column.strip().lower() for column in next(rows)]
        except (StopIteration, csv.Error):
            header = []
        if not _CSV_COLUMNS <= set(header):
            self._report(
                "not-mail",
                Severity.LOW,
                source,
                "CSV without the sender, receiver, date, subject, body and label columns",
                columns=header[:20],
            )
            return

        line = rows.line_num
        while True:
            position = MailSource(source.path, source.member, line=line + 1)
            try:
                row = next(rows)
            except StopIteration:
                return
            except csv.Error as exc:
                self._report("malformed-row", Severity.MEDIUM, position, f"unreadable row: {exc}")
                row = None
            line = rows.line_num
            if row is not None and len(row) != len(header):
                self._report(
                    "malformed-row",
                    Severity.MEDIUM,
                    position,
                    f"row has {len(row)} fields, the header {len(header)}",
                )
            elif row is not None:
                message = self._from_row(dict(zip(header, row, strict=True)), position)
                if message is not None:
                    yield message

    def _from_row(self, row: dict[str, str], source: MailSource) -> Message | None:
        body = row.get("body") or ""
        subject = row.get("subject") or ""
        if not body.strip() and not subject.strip():
            self._report("empty-message", Severity.LOW, source, "row without subject or body")
            return None

        name, address = _mime.parse_address(row.get("sender") or "")
        date = _mime.parse_date(row.get("date") or "")
        return Message(
            source=source,
            date=date,
            year=date.year if date else None,
            from_name=name,
            from_address=address,
            subject=_mime.one_line(subject),
            text=_mime.tidy_text(body),
            urls=tuple(dict.fromkeys(extract_urls(body))),
            label=_csv_label(row.get("label") or ""),
        )

    def _from_bytes(
        self, raw: bytes, name: str, source: MailSource, label: str | None, layout: str | None
    ) -> Iterator[Message]:
        text_layout = _text_layout(name, source, layout)
        try:
            if text_layout is not None:
                yield self._subject_body(raw, name, source, label, text_layout)
            else:
                yield self._parse_mail(raw, source, label)
        except _Skip as skip:
            self._report(skip.kind, skip.severity, source, skip.message)

    def _subject_body(
        self, raw: bytes, name: str, source: MailSource, label: str | None, layout: str
    ) -> Message:
        if not raw.strip():
            raise _Skip("empty-message", "empty file")
        text = _mime.decode_bytes(raw[: self.max_part_bytes], None)[0]
        first, _, rest = text.partition("\n")
        subject = ""
        if first.lower().startswith("subject:"):
            subject, text = first[len("subject:") :], rest

        urls: list[str] = []
        html = layout == "nazario-text" and _looks_like_html(text)
        if html:
            text, urls = html_to_text(text)
        text = _mime.tidy_text(text)
        year = None
        if enron := _ENRON_NAME.search(name) or _ENRON_NAME.search(source.member or ""):
            year = int(enron.group(1))
        return Message(
            source=source,
            year=year,
            subject=_mime.one_line(subject),
            text=text,
            html=html,
            urls=tuple(dict.fromkeys([*urls, *extract_urls(text)])),
            label=_text_label(source.member or name, layout) or label,
        )

    def _parse_mail(self, raw: bytes, source: MailSource, label: str | None) -> Message:
        raw = _strip_envelope(raw)
        if not raw.strip():
            raise _Skip("empty-message", "empty message")
        if b"\x00" in raw[:4096]:
            raise _Skip("not-mail", "binary content, not a mail message")

        try:
            parsed = BytesParser(policy=policy.default).parsebytes(raw)
            return self._build(parsed, source, label)
        except _Skip:
            raise
        except Exception as exc:  # noqa: BLE001 - fall back to the lenient parser
            logger.debug("%s: default policy failed (%r); retrying with compat32", source, exc)
        try:
            parsed = BytesParser(policy=policy.compat32).parsebytes(raw)
            return self._build(parsed, source, label)
        except _Skip:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad message must not stop the corpus
            raise _Skip("malformed-message", f"cannot parse message: {exc!r}") from exc

    def _build(self, parsed: EmailMessage, source: MailSource, label: str | None) -> Message:
        names = {key.lower() for key in parsed.keys()}
        if not names & _MAIL_HEADERS:
            raise _Skip("not-mail", "no mail headers found; not a mail message")
        subject = _mime.header_value(parsed, "Subject")
        if _PSEUDO_MESSAGE in subject:
            raise _Skip("mailbox-pseudo-message", "IMAP folder data, not mail", Severity.INFO)

        from_name, from_address = _mime.parse_address(_mime.header_value(parsed, "From"))
        reply_to = _mime.parse_address(_mime.header_value(parsed, "Reply-To"))[1]
        return_path = _mime.parse_address(_mime.header_value(parsed, "Return-Path"))[1]
        body = _mime.extract_body(parsed, self.max_part_bytes)
        date = _mime.message_date(parsed)
        signals = None
        if names - {"subject"}:
            signals = _mime.header_signals(parsed, from_name, from_address, reply_to, return_path)

        findings = [
            self._report(note.kind, note.severity, source, note.message, **note.evidence)
            for note in body.notes
        ]
        defects = sorted({type(d).__name__ for part in parsed.walk() for d in part.defects})
        if defects:
            text = "MIME defects repaired: " + ", ".join(defects)
            findings.append(
                self._report("mime-defects", Severity.LOW, source, text, defects=defects)
            )
        message_id = _mime.header_value(parsed, "Message-ID")
        return Message(
            source=source,
            message_id=message_id or None,
            date=date,
            year=date.year if date else None,
            from_name=from_name,
            from_address=from_address,
            reply_to=reply_to,
            return_path=return_path,
            subject=subject,
            text=body.text,
            html=body.html,
            urls=tuple(body.urls),
            attachments=tuple(body.attachments),
            signals=signals,
            label=label,
            findings=tuple(findings),
        )


def read_messages(
    path: str | Path,
    *,
    label: str | None = None,
    on_issue: Callable[[Finding], None] | None = None,
) -> Iterator[Message]:
    """Every message under ``path``, detecting what it is; see :meth:`MailReader.read`.

    Issues are logged and passed to ``on_issue``; use a :class:`MailReader` to keep them.
    """
    return MailReader(on_issue=on_issue).read(path, label=label)


def read_mbox(path: str | Path, *, label: str | None = None) -> Iterator[Message]:
    """Messages of an mbox file, plain or compressed."""
    return MailReader().read_mbox(path, label=label)


def read_eml(path: str | Path, *, label: str | None = None) -> Iterator[Message]:
    """The message of one ``.eml`` file."""
    return MailReader().read_eml(path, label=label)


def read_eml_folder(path: str | Path, *, label: str | None = None) -> Iterator[Message]:
    """Messages in a folder of ``.eml`` files, recursively."""
    return MailReader().read_eml_folder(path, label=label)


def read_tar(path: str | Path, *, label: str | None = None) -> Iterator[Message]:
    """Messages in a tar archive (``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2``, ``.tar.xz``)."""
    return MailReader().read_tar(path, label=label)


def read_enron(path: str | Path) -> Iterator[Message]:
    """Enron-Spam messages, labelled ham or spam."""
    return MailReader().read_enron(path)


def read_lingspam(path: str | Path) -> Iterator[Message]:
    """Ling-Spam messages, labelled ham or spam."""
    return MailReader().read_lingspam(path)


def read_nazario_csv(path: str | Path) -> Iterator[Message]:
    """Nazario 2015-2022 CSV rows, labelled phishing."""
    return MailReader().read_nazario_csv(path)


def parse_message(raw: bytes, *, source: str = "<bytes>", label: str | None = None) -> Message:
    """Parse one raw RFC 822 message, or raise :class:`~threattune.errors.DataError`.

    >>> parse_message(b"Subject: hi\\n\\nhello").text
    'hello'
    """
    reader = MailReader()
    message = reader.parse(raw, source=MailSource(source), label=label)
    if message is None:
        issue = reader.issues[-1]
        raise DataError(
            issue.message,
            path=source,
            expected="an RFC 822 message with headers",
            found=issue.kind,
            fix="check the input is raw mail, not an export or an attachment",
        )
    return message


def _open_file(path: Path) -> IO[bytes]:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise DataError(f"cannot open mail source: {exc}", path=path) from exc


def _decompressed(stream: IO[bytes], name: str) -> IO[bytes]:
    suffix = "." + name.rsplit(".", 1)[-1].lower()
    if suffix == ".gz":
        return gzip.GzipFile(fileobj=stream, mode="rb")
    if suffix == ".bz2":
        return bz2.BZ2File(stream, mode="rb")
    if suffix == ".xz":
        return lzma.LZMAFile(stream, mode="rb")
    return stream


def _stem(name: str) -> str:
    for suffix in (*_TAR_SUFFIXES, *_COMPRESSED, ".mbox", ".eml", ".txt", ".csv"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def _name_label(parts: Iterable[str]) -> str | None:
    label = None
    for part in parts:
        if match := _LABEL_PART.match(part):
            label = match.group(1).lower()
    return label


def _text_layout(name: str, source: MailSource, layout: str | None) -> str | None:
    where = source.member or source.path or name
    if layout in ("enron", "lingspam") and where.lower().endswith(".txt"):
        return layout
    if _ENRON_NAME.search(where):
        return "enron"
    if _LINGSPAM_NAME.search(where):
        return "lingspam"
    if _NAZARIO_TEXT_NAME.search(where):
        return "nazario-text"
    return None


def _text_label(where: str, layout: str) -> str | None:
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


def _looks_like_html(text: str) -> bool:
    return re.search(r"<(html|body|div|p|br|table|a\s|font|span|td)\b", text, re.I) is not None


def _strip_envelope(raw: bytes) -> bytes:
    raw = raw.lstrip(b"\r\n")
    if raw.startswith(b"From "):
        return raw.split(b"\n", 1)[1] if b"\n" in raw else b""
    return raw
