"""What in a message stands out to an analyst: the lure's kind, odd links, header red flags.

A phishing alert is more useful with its evidence: which links look wrong and why, which
headers disagree, and whether the lure is a link or an attachment, which decides the ATT&CK
sub-technique (T1566.002 Spearphishing Link, T1566.001 Spearphishing Attachment). Links are
parsed, never fetched; attachments are known by name and declared type, never opened.

>>> from threattune.sources.mail import parse_message
>>> message = parse_message(b"Subject: Verify\\n\\nLog in at http://192.0.2.7/login now")
>>> lure_technique(message)
'T1566.002'
>>> [finding.reasons for finding in suspicious_urls(message.urls)]
[('address instead of a host name', 'account words over plain http')]
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from threattune.sources._text import defang
from threattune.sources.mail import Attachment, Message

__all__ = [
    "RISKY_EXTENSIONS",
    "SHORTENERS",
    "SuspiciousUrl",
    "deceptive_links",
    "header_flags",
    "lure_technique",
    "risky_attachments",
    "suspicious_urls",
]

SHORTENERS = frozenset(
    "bit.ly tinyurl.com goo.gl t.co ow.ly is.gd buff.ly cutt.ly rebrand.ly tiny.cc shorturl.at "
    "rb.gy t.ly s.id v.gd bl.ink lnkd.in".split()
)
RISKY_EXTENSIONS = frozenset(
    "exe scr com pif bat cmd vbs vbe js jse wsf wsh hta lnk msi msp iso img vhd vhdx jar ps1 "
    "zip rar 7z gz ace cab arj docm xlsm pptm dotm xlam doc xls ppt rtf pdf html htm shtml svg "
    "one chm reg dll cpl".split()
)
_RISKY_TYPES = re.compile(
    r"application/(x-msdownload|x-dosexec|x-msdos-program|java-archive|zip|x-zip-compressed|"
    r"x-rar|x-7z|vnd\.ms-|msword|pdf|octet-stream|hta|x-iso9660)|text/html",
    re.IGNORECASE,
)
_ACCOUNT_WORDS = re.compile(
    r"log-?in|sign-?in|verify|account|secure|update|password|banking|confirm|webscr|wallet",
    re.IGNORECASE,
)
_FAILED_AUTH = frozenset({"fail", "softfail", "permerror", "temperror", "none", "neutral"})
_STANDARD_PORTS = frozenset({None, 80, 443})
_SHOWN_HOST = re.compile(r"(?i)(?<![@\w.-])(?:[a-z0-9-]+\.)+[a-z]{2,}(?![\w-])")


@dataclass(frozen=True)
class SuspiciousUrl:
    """A link that looks wrong, shown defanged, with why."""

    url: str
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.url} ({'; '.join(self.reasons)})"


def suspicious_urls(urls: Sequence[str], limit: int = 10) -> list[SuspiciousUrl]:
    """The links (at most ``limit``) with at least one trait common in phishing."""
    found: list[SuspiciousUrl] = []
    for url in dict.fromkeys(urls):
        reasons = _url_reasons(url)
        if reasons:
            found.append(SuspiciousUrl(defang(url), reasons))
            if len(found) >= limit:
                break
    return found


def deceptive_links(shown_links: Sequence[tuple[str, str]], limit: int = 10) -> list[SuspiciousUrl]:
    """Links whose text shows one site and whose target is another, the oldest lure in mail.

    A link counts when the host its text names and the host it leads to share no registered
    domain (their last two labels, a simplification that ignores suffixes like ``co.uk``).

    >>> [str(link) for link in deceptive_links([("www.paypal.com", "http://192.0.2.7/x")])]
    ['hxxp://192[.]0[.]2[.]7/x (shows www[.]paypal[.]com)']
    >>> deceptive_links([("paypal.com", "https://www.paypal.com/signin")])
    []
    """
    found: list[SuspiciousUrl] = []
    for shown, target in dict.fromkeys(shown_links):
        named = _SHOWN_HOST.search(shown)
        led_to = _host(target)
        if named is None or led_to is None:
            continue
        if _registered(named.group(0).lower()) != _registered(led_to):
            found.append(SuspiciousUrl(defang(target), (f"shows {defang(named.group(0))}",)))
            if len(found) >= limit:
                break
    return found


def _host(url: str) -> str | None:
    try:
        host = urlsplit(url if "://" in url else f"http://{url}").hostname
    except ValueError:
        return None
    return host.lower().rstrip(".") if host else None


def _registered(host: str) -> str:
    return host if _is_address(host) else ".".join(host.rstrip(".").split(".")[-2:])


def _url_reasons(url: str) -> tuple[str, ...]:
    try:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return ("malformed address",)
    reasons = []
    if _is_address(host):
        reasons.append("address instead of a host name")
    if "xn--" in host:
        reasons.append("punycode host name")
    if "@" in parts.netloc:
        reasons.append("user name before the host")
    if host in SHORTENERS:
        reasons.append("link shortener")
    if host.count(".") >= 4:
        reasons.append("many subdomains")
    if port not in _STANDARD_PORTS:
        reasons.append(f"port {port}")
    if parts.scheme == "http" and _ACCOUNT_WORDS.search(parts.path + "?" + parts.query):
        reasons.append("account words over plain http")
    if len(url) > 200:
        reasons.append("very long link")
    return tuple(reasons)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return bool(re.fullmatch(r"\d+", host))  # a decimal-encoded address
    return True


def risky_attachments(attachments: Sequence[Attachment]) -> list[Attachment]:
    """Attachments whose name or declared type can carry code or a lure."""
    risky = []
    for attachment in attachments:
        name = (attachment.filename or "").lower()
        extension = name.rsplit(".", 1)[-1] if "." in name else ""
        if extension in RISKY_EXTENSIONS or _RISKY_TYPES.match(attachment.content_type or ""):
            risky.append(attachment)
    return risky


def header_flags(message: Message) -> list[str]:
    """Header evidence that stands out: sender mismatches and failed authentication."""
    signals = message.signals
    if signals is None:
        return []
    flags = []
    if signals.reply_to_mismatch:
        flags.append(f"Reply-To domain {signals.reply_to_domain} differs from From")
    if signals.return_path_mismatch:
        flags.append(f"Return-Path domain {signals.return_path_domain} differs from From")
    if signals.display_name_spoof:
        flags.append(f"display name names another domain ({signals.display_name_domain})")
    for name in ("spf", "dkim", "dmarc"):
        verdict = getattr(signals, name)
        if verdict is not None and verdict.lower() in _FAILED_AUTH:
            flags.append(f"{name.upper()} {verdict}")
    return flags


def lure_technique(message: Message) -> str:
    """The T1566 sub-technique of a phishing message, by what carries its lure.

    A risky attachment makes it T1566.001 (Spearphishing Attachment); otherwise links make it
    T1566.002 (Spearphishing Link); any other attachment T1566.001; neither, plain T1566.
    """
    if risky_attachments(message.attachments):
        return "T1566.001"
    if message.urls:
        return "T1566.002"
    if message.attachments:
        return "T1566.001"
    return "T1566"
