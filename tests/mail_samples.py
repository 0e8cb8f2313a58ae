"""Builders of small, hostile mail for the mail-ingestion tests.

Each builder returns raw bytes as a mail server or an archive would hold them. None of them
comes from a real corpus; the domains are reserved ``.example`` names.
"""

from __future__ import annotations

import base64
import io
import tarfile

CRLF_SUBJECT = (
    "=?utf-8?b?" + base64.b64encode(b"Invoice\r\nBcc: victim@corp.example").decode() + "?="
)
ATTACHMENT_BYTES = b"%PDF-1.4\n% not a real document, only bytes to measure\n" * 20


def plain(
    subject: str = "Quarterly report", body: str = "See you at 10.\n", **headers: str
) -> bytes:
    """A plain-text message with the usual headers; extra headers by keyword (``Reply_To``)."""
    lines = [
        "From: Alice Analyst <alice@corp.example>",
        "To: bob@corp.example",
        f"Subject: {subject}",
        "Date: Tue, 05 Mar 2024 10:15:00 +0100",
        "Message-ID: <plain-1@corp.example>",
        *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items()),
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        body,
    ]
    return "\n".join(lines).encode()


def lure() -> bytes:
    """A credential-phishing lure with every header signal and a PDF attachment."""
    pdf = base64.encodebytes(ATTACHMENT_BYTES).decode()
    return f"""Return-Path: <bounce@mailer.bulk.example>
Received: from mx.corp.example by inbox.corp.example; Tue, 05 Mar 2024 10:15:03 +0000
Received: from relay.bulk.example by mx.corp.example; Tue, 05 Mar 2024 10:15:02 +0000
Received: from unknown (HELO pc) by relay.bulk.example; Tue, 05 Mar 2024 10:15:01 +0000
Authentication-Results: mx.corp.example; spf=softfail smtp.mailfrom=bulk.example;
 dkim=none; dmarc=fail header.from=paypal.example
Authentication-Results: relay.bulk.example; spf=pass smtp.mailfrom=bulk.example
From: "service@paypal.example" <security@login-verify.example>
Reply-To: <collect@harvest.example>
To: bob@corp.example
Subject: Your account is limited
Date: Tue, 05 Mar 2024 10:15:00 +0000
Message-ID: <lure-1@login-verify.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="OUTER"

--OUTER
Content-Type: multipart/alternative; boundary="INNER"

--INNER
Content-Type: text/plain; charset=utf-8

Dear customer, confirm your details at http://login-verify.example/plain.
--INNER
Content-Type: text/html; charset=utf-8

<html><body><p>Dear customer,</p>
<a href="http://login-verify.example/html?id=1">PayPal Login</a>
<form action="https://harvest.example/post"><input name="pw"></form>
</body></html>
--INNER--
--OUTER
Content-Type: application/pdf; name="invoice.pdf"
Content-Disposition: attachment; filename="invoice.pdf"
Content-Transfer-Encoding: base64

{pdf}
--OUTER--
""".encode()


def forwarded(disposition: str) -> bytes:
    """A report that carries a lure as an attached (or inline) ``message/rfc822`` part."""
    head = b"""From: user@corp.example
To: soc@corp.example
Subject: Fwd: suspicious
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="F"

--F
Content-Type: text/plain

Is this legit?
--F
Content-Type: message/rfc822
"""
    disposition_line = f"Content-Disposition: {disposition}; filename=lure.eml\n\n".encode()
    return head + disposition_line + lure() + b"\n--F--\n"


def html_only_alternative() -> bytes:
    """multipart/alternative whose plain part is empty, so the HTML part must be used."""
    return b"""From: news@shop.example
Subject: Sale
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="B"

--B
Content-Type: text/plain

--B
Content-Type: text/html

<div>Big <b>sale</b></div><div>today&nbsp;only</div>
--B--
"""


def script_html() -> bytes:
    """An HTML body with a script, a style sheet, a comment and a hidden link target."""
    return b"""From: it@corp.example
Subject: Password expiry
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<html><head><title>ignored title</title><style>p {color: red}</style></head>
<body><script type="text/javascript">document.location='http://steal.example/'</script>
<!-- <a href="http://comment.example/">hidden</a> -->
<p>Your password expires.<br>Keep it <a href="https://reset.steal.example/keep">here</a>.</p>
<img src="x" onerror="alert(1)"></body></html>
"""


def broken_boundary() -> bytes:
    """A multipart message whose parts use a boundary other than the declared one."""
    return b"""From: x@broken.example
Subject: Broken boundary
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="DECLARED"

--OTHER
Content-Type: text/plain

hello from a broken message http://broken.example/x
--OTHER--
"""


def unknown_charset(payload: bytes, charset: str = "x-klingon-7") -> bytes:
    """A text part in a charset no codec knows."""
    head = "From: x@charset.example\nSubject: Charset\nMIME-Version: 1.0\n"
    head += f'Content-Type: text/plain; charset="{charset}"\nContent-Transfer-Encoding: 8bit\n\n'
    return head.encode() + payload + b"\n"


def base64_garbage() -> bytes:
    """A part that claims base64 but holds characters base64 does not have."""
    return b"""From: x@garbage.example
Subject: Garbage
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

!!!%%%***this is not base64***%%%!!!
SGVsbG8=====
"""


def huge_part(size: int) -> bytes:
    """A message whose only text part is ``size`` bytes long."""
    return b"From: x@big.example\nSubject: Big\nContent-Type: text/plain\n\n" + b"A" * size + b"\n"


def header_injection() -> bytes:
    """Header values whose encoded words decode to line breaks and extra headers."""
    return f"""From: =?utf-8?q?Support=0D=0ABcc=3A_all=40corp=2Eexample?= <support@helpdesk.example>
To: bob@corp.example
Subject: {CRLF_SUBJECT}
Reply-To: =?utf-8?q?x=0D=0AX-Injected=3A_yes?= <x@helpdesk.example>
Content-Type: text/plain

body
""".encode()


def deep_html(levels: int) -> bytes:
    """An HTML body nested ``levels`` tags deep, the shape of a parser denial of service."""
    html = b"<div>" * levels + b"deep <b>text</b>" + b"</div>" * levels
    return b"From: x@deep.example\nSubject: Deep\nContent-Type: text/html\n\n" + html + b"\n"


def deep_multipart(levels: int) -> bytes:
    """Multipart parts nested ``levels`` deep around one text part."""
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (level, level)
        for level in range(levels)
    )
    closing = b"".join(b"\n--b%d--" % level for level in reversed(range(levels)))
    text = b"Content-Type: text/plain\n\nat the bottom\n"
    return b"From: x@deep.example\nSubject: Deep\nMIME-Version: 1.0\n" + opening + text + closing


def many_parts(count: int) -> bytes:
    """A multipart message of ``count`` small text parts."""
    parts = b"".join(b"--P\nContent-Type: text/plain\n\npart %d\n" % n for n in range(count))
    head = b"From: x@many.example\nSubject: Many\nContent-Type: multipart/mixed; boundary=P\n\n"
    return head + parts + b"--P--\n"


def binary_garbage() -> bytes:
    """Bytes that are not mail at all (a binary blob)."""
    return bytes(range(256)) * 4


def text_garbage() -> bytes:
    """Text without a single mail header."""
    return b"just some words\nthat are not a message\n{json: maybe}\n"


def mbox(*messages: bytes) -> bytes:
    """An mbox file of ``messages``, each after an envelope line, body ``From`` lines escaped."""
    out = []
    for number, message in enumerate(messages):
        body = b"\n".join(
            b">" + line if line.startswith(b"From ") else line for line in message.split(b"\n")
        )
        out.append(b"From sender%d@host.example  Tue Mar  5 10:15:00 2024\n" % number)
        out.append(body.rstrip(b"\n") + b"\n\n")
    return b"".join(out)


def tar_of(members: dict[str, bytes], mode: str = "w") -> bytes:
    """A tar archive (``mode`` ``w``, ``w:gz``, ``w:bz2`` or ``w:xz``) holding ``members``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:  # type: ignore[call-overload]
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def nested_tar(levels: int, message: bytes) -> bytes:
    """``message`` inside ``levels`` archives each inside the next (``levels`` >= 1)."""
    archive = tar_of({"deep.eml": message}, "w:gz")
    for level in range(1, levels):
        archive = tar_of({f"level{level}.tar.gz": archive}, "w:gz")
    return archive
