"""The parsed message and its source position, shared by the mail readers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from threattune.findings import Finding
from threattune.sources._headers import HeaderSignals
from threattune.sources._mime import Attachment
from threattune.sources._text import defang

__all__ = ["MailSource", "Message"]


@dataclass(frozen=True, slots=True)
class MailSource:
    """Where a message came from: a file, the archive member inside it, its place in a mailbox.

    ``member`` joins nested archive members with ``!``; ``index`` is the 1-based message number
    in an mbox; ``line`` the 1-based line where the message starts in an mbox or CSV.

    >>> str(MailSource("phishing0.mbox", index=3, line=120))
    'phishing0.mbox, message 3, line 120'
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

    def at(self, *, index: int | None = None, line: int | None = None) -> MailSource:
        """This source at a message number or line."""
        return MailSource(self.path, self.member, index, line)

    def evidence(self) -> dict[str, Any]:
        """The known parts of the position, for a finding's evidence."""
        parts = {"path": self.path, "member": self.member, "index": self.index, "line": self.line}
        return {key: value for key, value in parts.items() if value is not None}


@dataclass(frozen=True, slots=True)
class Message:
    """One parsed message: who sent it, what it says, where it links, what it carries.

    ``text`` is plain text (HTML bodies converted, ``html`` then true). ``urls`` are live as
    written; show ``defanged_urls``. ``shown_links`` pairs the text an HTML link shows, where
    it reads like an address, with where it leads. ``signals`` is None for text-only sources,
    which keep no headers. ``year`` is the plausible year the message was sent, from its
    headers or from a text corpus's file names. ``findings`` lists what was repaired or cut
    while parsing.
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
    shown_links: tuple[tuple[str, str], ...] = ()
    attachments: tuple[Attachment, ...] = ()
    signals: HeaderSignals | None = None
    label: str | None = None
    findings: tuple[Finding, ...] = field(default=(), compare=False)

    @property
    def defanged_urls(self) -> tuple[str, ...]:
        """The URLs, defanged for display (``hxxp://``, ``[.]``)."""
        return tuple(defang(url) for url in self.urls)
