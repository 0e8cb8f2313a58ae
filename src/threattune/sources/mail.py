"""Mail ingestion: raw mail in, parsed messages with the signals an analyst weighs out.

Reads mbox files, single ``.eml`` files, folders of them, tar archives (plain, gzip, bzip2 or
xz, streamed member by member, archives inside archives to a bounded depth) and the public text
corpora (Enron-Spam, Ling-Spam, the Nazario 2015-2022 CSV). Every reader is a generator, so
memory stays flat however large the corpus. A message that cannot be used is skipped and
reported as a :class:`~threattune.findings.Finding` naming its file and position; the rest
goes on. Attachments are measured, never written out or opened, and URLs are never fetched.

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
from collections.abc import Callable, Iterator
from email import policy
from email.message import Message as EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import IO, Any

from threattune.errors import DataError
from threattune.findings import Finding, Severity
from threattune.sources import _corpora, _headers, _mime
from threattune.sources._corpora import ARCHIVE_SUFFIXES, COMPRESSED_SUFFIXES
from threattune.sources._headers import HeaderSignals
from threattune.sources._message import MailSource, Message
from threattune.sources._mime import Attachment
from threattune.sources._text import defang, extract_urls, html_to_text

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

MB = 1024 * 1024

_DOCUMENT_NAMES = re.compile(
    r"^(readme.*|summary\.txt|provenance\.md|sha\d*sums|md5sums|license.*|copying.*"
    r"|manifest\.csv|index\.csv|\..*)$|\.(md|json|ya?ml|py|sh|html?)$",
    re.IGNORECASE,
)
_ENVELOPE = re.compile(rb"^From \S*\s+.*\d\d:\d\d")
_ESCAPED_FROM = re.compile(rb"^>(>*From )")
_MAIL_HEADERS = frozenset(
    "from to cc subject date message-id received return-path reply-to sender content-type "
    "mime-version delivered-to x-mailer authentication-results".split()
)
_PSEUDO_MESSAGE = "FOLDER INTERNAL DATA"
_STREAM_ERRORS = (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error)


class _Skip(Exception):
    """A message that cannot be used, with what to report about it."""

    def __init__(self, kind: str, message: str, severity: Severity = Severity.MEDIUM) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.severity = severity


class MailReader:
    """Reads mail from files, folders and archives, keeping what it had to skip in ``issues``.

    Parameters
    ----------
    max_message_bytes:
        A message, archive member or single file larger than this is skipped with a finding.
    max_part_bytes:
        A text or HTML part larger than this is cut to it, with a finding.
    max_archive_depth:
        How many levels of archives inside an archive are opened; deeper ones are skipped.
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
        Ling-Spam file naming, or in the CSV ``label`` column.
        """
        path = _existing(path)
        if path.is_dir():
            return self._read_folder(path, label, None)
        return self._read_path(path, label, None, None)

    def read_mbox(self, path: str | Path, *, label: str | None = None) -> Iterator[Message]:
        """Messages of an mbox file, plain or compressed (``.gz``, ``.bz2``, ``.xz``)."""
        return self._read_path(_existing(path), label, None, "mbox")

    def read_eml(self, path: str | Path, *, label: str | None = None) -> Iterator[Message]:
        """The message of one ``.eml`` (raw RFC 822) file; none, with an issue, if unusable."""
        return self._read_path(_existing(path), label, None, "mail")

    def read_eml_folder(self, path: str | Path, *, label: str | None = None) -> Iterator[Message]:
        """Messages in a folder and its sub-folders, in name order, archives included."""
        return self._read_folder(_existing(path), label, None)

    def read_tar(self, path: str | Path, *, label: str | None = None) -> Iterator[Message]:
        """Messages in a tar archive, streamed one member at a time."""
        return self._read_path(_existing(path), label, None, "tar")

    def read_enron(self, path: str | Path) -> Iterator[Message]:
        """Enron-Spam messages (an ``enronN`` archive or folder): subject and body, labelled."""
        return self._read_corpus(_existing(path), "enron")

    def read_lingspam(self, path: str | Path) -> Iterator[Message]:
        """Ling-Spam messages (archive or folder): subject and body; ``spmsg*`` files are spam."""
        return self._read_corpus(_existing(path), "lingspam")

    def read_nazario_csv(self, path: str | Path) -> Iterator[Message]:
        """Rows of the Nazario 2015-2022 CSV (plain or compressed) as text-only messages."""
        return self._read_path(_existing(path), None, None, "csv")

    def read_bytes(
        self, raw: bytes, *, name: str = "<bytes>", label: str | None = None
    ) -> Iterator[Message]:
        """The message in ``raw``, or nothing (with an issue) when it is not usable mail."""
        return self._from_bytes(raw, MailSource(name), label, None)

    def parse(
        self, raw: bytes, *, source: MailSource | None = None, label: str | None = None
    ) -> Message | None:
        """Parse one raw RFC 822 message; None, with an issue, when it cannot be used."""
        return next(self._from_bytes(raw, source or MailSource("<bytes>"), label, None), None)

    def _report(
        self, kind: str, severity: Severity, source: MailSource, message: str, **evidence: Any
    ) -> Finding:
        known = {key: value for key, value in evidence.items() if value is not None}
        finding = Finding(kind, severity, str(source), message, {**source.evidence(), **known})
        self.issues.append(finding)
        log = logger.warning if severity >= Severity.MEDIUM else logger.debug
        log("%s: %s", finding.subject, message)
        if self.on_issue is not None:
            self.on_issue(finding)
        return finding

    def _read_corpus(self, path: Path, layout: str) -> Iterator[Message]:
        if path.is_dir():
            return self._read_folder(path, None, layout)
        return self._read_path(path, None, layout, None)

    def _read_folder(self, root: Path, label: str | None, layout: str | None) -> Iterator[Message]:
        for folder, subfolders, files in os.walk(root):
            subfolders.sort()
            for name in sorted(files):
                path = Path(folder, name)
                if _DOCUMENT_NAMES.search(name):
                    logger.debug("%s: documentation, not mail; skipped", path)
                    continue
                parts = [*path.relative_to(root).parent.parts, _corpora.stem(name)]
                yield from self._read_path(path, _corpora.name_label(parts) or label, layout, None)

    def _read_path(
        self, path: Path, label: str | None, layout: str | None, kind: str | None
    ) -> Iterator[Message]:
        source = MailSource(str(path))
        label = _corpora.name_label([_corpora.stem(path.name)]) or label
        try:
            with open(path, "rb") as stream:
                yield from self._read_stream(stream, path.name, source, label, 0, layout, kind)
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
        kind: str | None = None,
    ) -> Iterator[Message]:
        lower = name.lower()
        if (kind is None and lower.endswith(ARCHIVE_SUFFIXES)) or kind == "tar":
            yield from self._read_tar(stream, source, label, depth, layout)
        elif lower.endswith(COMPRESSED_SUFFIXES):
            inner = name.rsplit(".", 1)[0]
            try:
                stream = _decompressed(stream, lower)
                yield from self._read_stream(stream, inner, source, label, depth, layout, kind)
            except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
                self._report("unreadable-archive", Severity.HIGH, source, f"bad compression: {exc}")
        elif (kind is None and lower.endswith((".mbox", "mbox"))) or kind == "mbox":
            yield from self._read_mbox(stream, source, label)
        elif (kind is None and lower.endswith(".csv")) or kind == "csv":
            yield from self._read_csv(stream, source)
        elif kind is None and lower.endswith(".zip"):
            self._report(
                "unsupported-archive", Severity.MEDIUM, source, "zip archives are not read"
            )
        else:
            raw = stream.read(self.max_message_bytes + 1)
            if len(raw) > self.max_message_bytes:
                self._oversized(source, None)
            else:
                yield from self._from_bytes(raw, source, label, layout)

    def _oversized(self, source: MailSource, size: int | None) -> None:
        self._report(
            "oversized-message",
            Severity.MEDIUM,
            source,
            f"larger than {self.max_message_bytes} bytes; skipped",
            bytes=size,
            limit=self.max_message_bytes,
        )

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
        except _STREAM_ERRORS as exc:
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
        parts = [*member.name.split("/")[:-1], _corpora.stem(base)]
        label = _corpora.name_label(parts) or label
        if _DOCUMENT_NAMES.search(base):
            logger.debug("%s: documentation, not mail; skipped", source)
            return
        if member.size > self.max_message_bytes:
            self._oversized(source, member.size)
            return
        if base.lower().endswith(ARCHIVE_SUFFIXES) and depth >= self.max_archive_depth:
            self._report(
                "archive-too-deep",
                Severity.MEDIUM,
                source,
                f"archive nested more than {self.max_archive_depth} levels deep; skipped",
                depth=depth + 1,
            )
            return

        stream = archive.extractfile(member)
        if stream is not None:
            yield from self._read_stream(stream, base, source, label, depth + 1, layout)

    def _read_mbox(
        self, stream: IO[bytes], source: MailSource, label: str | None
    ) -> Iterator[Message]:
        lines: list[bytes] = []
        size, index, start = 0, 1, 1
        previous_blank = True
        for number, line in enumerate(stream, start=1):
            if previous_blank and _ENVELOPE.match(line) and _has_text(lines):
                yield from self._mbox_message(
                    lines, size, source.at(index=index, line=start), label
                )
                lines, size, index, start = [], 0, index + 1, number
            size += len(line)
            if size <= self.max_message_bytes:
                lines.append(_ESCAPED_FROM.sub(rb"\1", line))
            previous_blank = not line.strip()
        if _has_text(lines):
            yield from self._mbox_message(lines, size, source.at(index=index, line=start), label)

    def _mbox_message(
        self, lines: list[bytes], size: int, source: MailSource, label: str | None
    ) -> Iterator[Message]:
        if size > self.max_message_bytes:
            self._oversized(source, size)
            return
        yield from self._from_bytes(b"".join(lines), source, label, None)

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
        if not _corpora.CSV_COLUMNS <= set(header):
            expected = ", ".join(sorted(_corpora.CSV_COLUMNS))
            self._report("not-mail", Severity.LOW, source, f"CSV without columns {expected}")
            return

        line = rows.line_num
        while True:
            position = source.at(line=line + 1)
            try:
                row = next(rows)
            except StopIteration:
                return
            except csv.Error as exc:
                self._report("malformed-row", Severity.MEDIUM, position, f"unreadable row: {exc}")
                row = None
            line = rows.line_num
            if row is not None and len(row) != len(header):
                found = f"{len(row)} fields, the header has {len(header)}"
                self._report("malformed-row", Severity.MEDIUM, position, found)
            elif row is not None:
                message = _corpora.csv_message(dict(zip(header, row, strict=True)), position)
                if message is None:
                    self._report("empty-message", Severity.LOW, position, "no subject or body")
                else:
                    yield message

    def _from_bytes(
        self, raw: bytes, source: MailSource, label: str | None, layout: str | None
    ) -> Iterator[Message]:
        where = source.member or source.path
        text_layout = _corpora.text_layout(where, layout)
        try:
            if text_layout is None:
                yield self._parse_mail(raw, source, label)
                return
            message = _corpora.subject_body_message(
                raw, where, source, label, text_layout, self.max_part_bytes
            )
            if message is None:
                raise _Skip("empty-message", "empty file", Severity.LOW)
            yield message
        except _Skip as skip:
            self._report(skip.kind, skip.severity, source, skip.message)

    def _parse_mail(self, raw: bytes, source: MailSource, label: str | None) -> Message:
        raw = _strip_envelope(raw)
        if not raw.strip():
            raise _Skip("empty-message", "empty message", Severity.LOW)
        if b"\x00" in raw[:4096]:
            raise _Skip("not-mail", "binary content, not a mail message")

        try:
            return self._build(BytesParser(policy=policy.default).parsebytes(raw), source, label)
        except _Skip:
            raise
        except Exception as exc:  # noqa: BLE001 - retry with the lenient legacy parser
            logger.debug("%s: default policy failed (%r); retrying with compat32", source, exc)
        try:
            return self._build(BytesParser(policy=policy.compat32).parsebytes(raw), source, label)
        except _Skip:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad message must not stop the corpus
            raise _Skip("malformed-message", f"cannot parse message: {exc!r}") from exc

    def _build(self, parsed: EmailMessage, source: MailSource, label: str | None) -> Message:
        names = {key.lower() for key in parsed.keys()}
        if not names & _MAIL_HEADERS:
            raise _Skip("not-mail", "no mail headers found; not a mail message")
        subject = _headers.header_value(parsed, "Subject")
        if _PSEUDO_MESSAGE in subject:
            raise _Skip("mailbox-pseudo-message", "IMAP folder data, not mail", Severity.INFO)

        addresses = {
            name: _headers.parse_address(_headers.header_value(parsed, name, decode=False))
            for name in ("From", "Reply-To", "Return-Path")
        }
        from_name, from_address = addresses["From"]
        reply_to, return_path = addresses["Reply-To"][1], addresses["Return-Path"][1]
        signals = None
        if names - {"subject"}:
            signals = _headers.header_signals(
                parsed, from_name, from_address, reply_to, return_path
            )
        date, year = _headers.message_date(parsed)
        body = _mime.extract_body(parsed, self.max_part_bytes)

        findings = [
            self._report(note.kind, note.severity, source, note.message, **note.evidence)
            for note in body.notes
        ]
        defects = sorted({type(d).__name__ for part in parsed.walk() for d in part.defects})
        if defects:
            why = "MIME defects repaired: " + ", ".join(defects)
            findings.append(
                self._report("mime-defects", Severity.LOW, source, why, defects=defects)
            )
        return Message(
            source=source,
            message_id=_headers.header_value(parsed, "Message-ID") or None,
            date=date,
            year=year,
            from_name=from_name,
            from_address=from_address,
            reply_to=reply_to,
            return_path=return_path,
            subject=subject,
            text=body.text,
            html=body.html,
            urls=tuple(body.urls),
            shown_links=tuple(body.shown_links),
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

    >>> from itertools import islice
    >>> for message in islice(read_messages("spam.tar.xz"), 3):  # doctest: +SKIP
    ...     print(message.source, message.label, message.defanged_urls)
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


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(
            "mail source not found",
            path=path,
            fix="name an mbox, .eml, folder, archive or corpus file that exists",
        )
    return path


def _decompressed(stream: IO[bytes], name: str) -> IO[bytes]:
    if name.endswith(".gz"):
        return gzip.GzipFile(fileobj=stream, mode="rb")
    if name.endswith(".bz2"):
        return bz2.BZ2File(stream, mode="rb")
    return lzma.LZMAFile(stream, mode="rb")


def _has_text(lines: list[bytes]) -> bool:
    return any(line.strip() for line in lines)


def _strip_envelope(raw: bytes) -> bytes:
    raw = raw.lstrip(b"\r\n")
    if raw.startswith(b"From "):
        return raw.split(b"\n", 1)[1] if b"\n" in raw else b""
    return raw
