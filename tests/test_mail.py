"""Mail ingestion: hostile constructed messages, containers, and slices of the real corpora."""

from __future__ import annotations

import bz2
import gzip
import inspect
import lzma
import re
import time
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

import pytest

import mail_samples as samples
from threattune.errors import DataError
from threattune.findings import Finding, Severity
from threattune.sources.mail import (
    MailReader,
    MailSource,
    Message,
    defang,
    extract_urls,
    html_to_text,
    parse_message,
    read_enron,
    read_lingspam,
    read_mbox,
    read_messages,
    read_nazario_csv,
    read_tar,
)

SLICE = 50
TAG = re.compile(r"<(a|p|div|br|table|font|script)\b", re.IGNORECASE)


def kinds(reader: MailReader) -> list[str]:
    return [issue.kind for issue in reader.issues]


# --- text helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://login.evil.example/a.php", "hxxp://login[.]evil[.]example/a.php"),
        ("HTTPS://evil.example:8443/x?y=1.2", "hxxps://evil[.]example:8443/x?y=1.2"),
        ("ftp://10.0.0.1/drop", "fxp://10[.]0[.]0[.]1/drop"),
        ("www.evil.example/path.html", "www[.]evil[.]example/path.html"),
        ("hxxp://already[.]defanged[.]example", "hxxp://already[.]defanged[.]example"),
    ],
)
def test_defang_breaks_scheme_and_host_dots_only(url: str, expected: str) -> None:
    assert defang(url) == expected
    assert defang(defang(url)) == expected


def test_extract_urls_trims_sentence_punctuation() -> None:
    text = "Go to http://evil.example/login. Or (see https://x.example/a_(b)) and www.y.example!"

    assert extract_urls(text) == [
        "http://evil.example/login",
        "https://x.example/a_(b)",
        "www.y.example",
    ]


def test_html_to_text_drops_markup_and_keeps_link_targets() -> None:
    html = (
        "<html><head><title>t</title><style>p{}</style></head><body>"
        "<script>document.location='http://steal.example/'</script><!-- secret -->"
        "<p>Dear&nbsp;user,</p><div>click <a href='http://a.example/x'>here</a></div>"
        "<form action='https://post.example/'></form><a href='mailto:x@y.example'>m</a>"
        "<meta http-equiv='refresh' content='0; url=http://refresh.example/'></body></html>"
    )

    text, targets = html_to_text(html)

    assert text == "Dear user,\n\nclick here\n\nm"
    assert targets == ["http://a.example/x", "https://post.example/", "http://refresh.example/"]


# --- one message -------------------------------------------------------------------------------


def test_plain_message_fields() -> None:
    message = parse_message(samples.plain(body="Agenda at https://intranet.example/agenda\n"))

    assert message.subject == "Quarterly report"
    assert (message.from_name, message.from_address) == ("Alice Analyst", "alice@corp.example")
    assert message.message_id == "<plain-1@corp.example>"
    assert message.date is not None and message.date.utcoffset() is not None
    assert message.year == 2024
    assert message.text == "Agenda at https://intranet.example/agenda"
    assert message.urls == ("https://intranet.example/agenda",)
    assert message.defanged_urls == ("hxxps://intranet[.]example/agenda",)
    assert message.html is False
    assert message.findings == ()


def test_lure_header_signals_urls_and_attachment() -> None:
    message = parse_message(samples.lure(), source="lure.eml", label="phishing")
    signals = message.signals

    assert signals is not None
    assert signals.from_domain == "login-verify.example"
    assert signals.reply_to_mismatch is True and signals.reply_to_domain == "harvest.example"
    assert signals.return_path_mismatch is True
    assert signals.display_name_spoof is True
    assert signals.display_name_domain == "paypal.example"
    assert (signals.spf, signals.dkim, signals.dmarc) == ("softfail", "none", "fail")
    assert signals.received_hops == 3
    assert message.text.startswith("Dear customer, confirm")
    assert message.html is False
    assert set(message.urls) == {
        "http://login-verify.example/plain",
        "http://login-verify.example/html?id=1",
        "https://harvest.example/post",
    }
    [attachment] = message.attachments
    assert attachment.filename == "invoice.pdf"
    assert attachment.content_type == "application/pdf"
    assert attachment.size == len(samples.ATTACHMENT_BYTES)
    assert message.label == "phishing"


def test_matching_domains_are_not_a_mismatch() -> None:
    raw = samples.plain(Reply_To="<help@mail.corp.example>", Return_Path="<b@corp.example>")

    signals = parse_message(raw).signals

    assert signals is not None
    assert signals.reply_to_mismatch is False and signals.return_path_mismatch is False
    assert signals.display_name_spoof is False
    assert signals.spf is None and signals.received_hops == 0


def test_bare_domain_in_display_name_is_spoofing() -> None:
    raw = samples.plain().replace(
        b"From: Alice Analyst <alice@corp.example>", b'From: "PayPal.com Support" <x@evil.example>'
    )

    signals = parse_message(raw).signals

    assert signals is not None and signals.display_name_domain == "paypal.com"


def test_attached_message_is_measured_not_read_but_inline_is_read() -> None:
    attached = parse_message(samples.forwarded("attachment"))
    inline = parse_message(samples.forwarded("inline"))

    assert attached.text == "Is this legit?"
    assert attached.urls == ()
    [attachment] = attached.attachments
    assert (attachment.filename, attachment.content_type) == ("lure.eml", "message/rfc822")
    assert attachment.size > len(samples.ATTACHMENT_BYTES)
    assert "confirm your details" in inline.text
    assert "https://harvest.example/post" in inline.urls
    assert [a.filename for a in inline.attachments] == ["invoice.pdf"]


def test_empty_plain_alternative_falls_back_to_html() -> None:
    message = parse_message(samples.html_only_alternative())

    assert message.html is True
    assert message.text == "Big sale\n\ntoday only"


def test_script_in_html_comes_out_as_text_only() -> None:
    message = parse_message(samples.script_html())

    assert message.text == "Your password expires.\nKeep it here."
    assert "<" not in message.text and "steal.example/'" not in message.text
    assert message.urls == ("https://reset.steal.example/keep",)
    assert message.defanged_urls == ("hxxps://reset[.]steal[.]example/keep",)


def test_broken_boundary_is_repaired_with_a_finding() -> None:
    reader = MailReader()

    message = reader.parse(samples.broken_boundary(), source=MailSource("broken.eml"))

    assert message is not None
    assert message.text == "hello from a broken message http://broken.example/x"
    assert message.urls == ("http://broken.example/x",)
    assert "broken-mime-boundary" in kinds(reader)
    assert all(issue.subject == "broken.eml" for issue in reader.issues)


def test_unknown_charset_falls_back_to_utf8_then_latin1() -> None:
    reader = MailReader()

    as_utf8 = reader.parse(samples.unknown_charset("café ☕".encode()))
    as_latin1 = reader.parse(samples.unknown_charset("café".encode("latin-1")))
    mislabelled = reader.parse(samples.unknown_charset("café".encode("latin-1"), "utf-8"))
    one_bad_byte = reader.parse(samples.unknown_charset("naïve ☕".encode() + b"\xff", "utf-8"))

    assert as_utf8 is not None and as_utf8.text == "café ☕"
    assert as_latin1 is not None and as_latin1.text == "café"
    assert mislabelled is not None and mislabelled.text == "café"
    assert one_bad_byte is not None and one_bad_byte.text == "naïve ☕\ufffd"
    assert kinds(reader) == ["charset-fallback"] * 4
    assert reader.issues[0].evidence["charset"] == "x-klingon-7"


def test_base64_garbage_is_dropped_not_fatal() -> None:
    reader = MailReader()

    message = reader.parse(samples.base64_garbage())

    assert message is not None and message.subject == "Garbage"
    assert message.text == ""
    assert "undecodable-part" in kinds(reader)
    assert any("InvalidBase64" in " ".join(f.evidence.get("defects", [])) for f in reader.issues)


def test_huge_part_is_truncated_with_a_finding() -> None:
    reader = MailReader(max_part_bytes=10_000)

    message = reader.parse(samples.huge_part(1_000_000))

    assert message is not None and len(message.text) == 10_000
    [issue] = reader.issues
    assert issue.kind == "truncated-part"
    assert issue.evidence["bytes"] > 1_000_000 - 10 and issue.evidence["limit"] == 10_000
    assert message.findings == (issue,)


def test_deeply_nested_html_is_read_in_linear_time() -> None:
    started = time.perf_counter()

    message = parse_message(samples.deep_html(20_000))

    assert message.text == "deep text"
    assert time.perf_counter() - started < 20


def test_mime_nesting_and_part_count_are_bounded() -> None:
    reader = MailReader()

    shallow = reader.parse(samples.deep_multipart(10))
    deep = reader.parse(samples.deep_multipart(60))
    many = reader.parse(samples.many_parts(1_000))

    assert shallow is not None and shallow.text == "at the bottom"
    assert deep is not None and deep.text == ""
    assert many is not None and many.text.count("part ") == 499
    assert {"mime-too-deep", "too-many-parts"} <= set(kinds(reader))


def test_header_injection_stays_on_one_line_and_keeps_the_real_sender() -> None:
    message = parse_message(samples.header_injection())

    assert message.subject == "Invoice Bcc: victim@corp.example"
    assert message.from_address == "support@helpdesk.example"
    assert message.from_name == "Support Bcc: all@corp.example"
    assert message.reply_to == "x@helpdesk.example"
    for value in (message.subject, message.from_name):
        assert "\r" not in value and "\n" not in value
    assert message.signals is not None and message.signals.display_name_domain == "corp.example"


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"", "empty-message"),
        (b"\n\r\n", "empty-message"),
        (samples.binary_garbage(), "not-mail"),
        (samples.text_garbage(), "not-mail"),
    ],
)
def test_unusable_input_is_skipped_with_an_issue(raw: bytes, kind: str) -> None:
    reader = MailReader()

    assert reader.parse(raw, source=MailSource("drop/x.eml")) is None

    [issue] = reader.issues
    assert (issue.kind, issue.subject, issue.evidence["path"]) == (kind, "drop/x.eml", "drop/x.eml")
    with pytest.raises(DataError, match=r"x\.eml"):
        parse_message(raw, source="x.eml")


def test_mbox_pseudo_message_is_skipped_quietly() -> None:
    reader = MailReader()
    raw = samples.plain(subject="DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA")

    assert reader.parse(raw) is None
    assert reader.issues[0].kind == "mailbox-pseudo-message"
    assert reader.issues[0].severity == Severity.INFO


def test_bogus_dates_give_a_plausible_year() -> None:
    y2k_bug = samples.plain().replace(b"05 Mar 2024", b"27 Aug 102")
    future = samples.plain().replace(b"05 Mar 2024", b"05 Mar 2091")
    received = future.replace(
        b"To: ", b"Received: from a by b; Mon, 04 Mar 2024 09:00:00 +0000\nTo: "
    )

    assert parse_message(y2k_bug).year == 2002
    assert parse_message(future).year is None
    assert parse_message(future).date is not None
    assert parse_message(received).year == 2024


# --- containers --------------------------------------------------------------------------------


def test_mbox_positions_and_a_bad_message_in_the_middle(tmp_path: Path) -> None:
    path = tmp_path / "inbox.mbox"
    body = "First line\nFrom the desk of the CEO\n"
    path.write_bytes(samples.mbox(samples.plain(body=body), b"", samples.lure()))
    reader = MailReader()

    messages = list(reader.read_mbox(path, label="phishing"))

    assert [m.source.index for m in messages] == [1, 3]
    assert messages[0].source.line == 1
    assert messages[0].text == "First line\nFrom the desk of the CEO"
    assert str(messages[1].source).startswith(f"{path}, message 3, line ")
    assert {m.label for m in messages} == {"phishing"}
    [issue] = reader.issues
    assert (issue.kind, issue.evidence["index"]) == ("empty-message", 2)


@pytest.mark.parametrize(
    ("suffix", "compress"), [(".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress)]
)
def test_compressed_mbox(tmp_path: Path, suffix: str, compress: Callable[[bytes], bytes]) -> None:
    path = tmp_path / f"phishing7.mbox{suffix}"
    path.write_bytes(compress(samples.mbox(samples.lure(), samples.plain())))

    messages = list(read_messages(path))

    assert [m.subject for m in messages] == ["Your account is limited", "Quarterly report"]
    assert {m.label for m in messages} == {"phishing"}


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("a.tar", "w"),
        ("a.tar.gz", "w:gz"),
        ("a.tgz", "w:gz"),
        ("a.tar.bz2", "w:bz2"),
        ("a.tar.xz", "w:xz"),
    ],
)
def test_tar_archives_of_every_compression(tmp_path: Path, name: str, mode: str) -> None:
    members = {"mail/spam/1.eml": samples.lure(), "mail/ham/2": samples.plain()}
    path = tmp_path / name
    path.write_bytes(samples.tar_of(members, mode))

    messages = list(read_tar(path))

    assert [(m.source.member, m.label) for m in messages] == [
        ("mail/spam/1.eml", "spam"),
        ("mail/ham/2", "ham"),
    ]
    assert messages[0].source.path == str(path)


def test_nested_tar_is_read_and_too_deep_is_skipped(tmp_path: Path) -> None:
    outer = samples.tar_of(
        {
            "two.tar.gz": samples.nested_tar(2, samples.plain(subject="two deep")),
            "three.tar.gz": samples.nested_tar(3, samples.plain(subject="three deep")),
            "top.eml": samples.plain(subject="top"),
        },
        "w:xz",
    )
    path = tmp_path / "outer.tar.xz"
    path.write_bytes(outer)
    reader = MailReader(max_archive_depth=2)

    messages = list(reader.read(path))

    assert [m.subject for m in messages] == ["two deep", "top"]
    assert messages[0].source.member == "two.tar.gz!level1.tar.gz!deep.eml"
    [issue] = reader.issues
    assert issue.kind == "archive-too-deep"
    assert issue.evidence["member"] == "three.tar.gz!level2.tar.gz!level1.tar.gz"


def test_oversized_member_is_skipped_and_the_rest_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "big.tar"
    members = {"big.eml": samples.huge_part(50_000), "small.eml": samples.plain()}
    path.write_bytes(samples.tar_of(members))
    seen: list[Finding] = []
    reader = MailReader(max_message_bytes=10_000, on_issue=seen.append)

    messages = list(reader.read(path))

    assert [m.source.member for m in messages] == ["small.eml"]
    assert seen == reader.issues
    assert (seen[0].kind, seen[0].evidence["member"]) == ("oversized-message", "big.eml")


def test_truncated_archive_reports_and_keeps_what_was_read(tmp_path: Path) -> None:
    members = {f"m{i}.eml": samples.plain(subject=f"n{i}", body="x" * 3000) for i in range(5)}
    whole = samples.tar_of(members)
    path = tmp_path / "cut.tar"
    path.write_bytes(whole[: len(whole) // 2])
    reader = MailReader()

    messages = list(reader.read(path))

    assert 0 < len(messages) < 5
    assert kinds(reader)[-1] == "unreadable-archive"
    assert reader.issues[-1].severity == Severity.HIGH


def test_folder_recursive_with_labels_docs_and_bad_files(tmp_path: Path) -> None:
    (tmp_path / "spam" / "2024").mkdir(parents=True)
    (tmp_path / "ham").mkdir()
    (tmp_path / "README.md").write_text("# not mail")
    (tmp_path / "ham" / "a.eml").write_bytes(samples.plain())
    (tmp_path / "ham" / "empty.eml").write_bytes(b"")
    (tmp_path / "spam" / "2024" / "b.eml").write_bytes(samples.lure())
    (tmp_path / "spam" / "blob.bin").write_bytes(samples.binary_garbage())
    reader = MailReader()

    messages = list(reader.read(tmp_path))

    assert [(Path(m.source.path).name, m.label) for m in messages] == [
        ("a.eml", "ham"),
        ("b.eml", "spam"),
    ]
    assert kinds(reader) == ["empty-message", "not-mail"]
    assert reader.issues[0].subject == str(tmp_path / "ham" / "empty.eml")


def test_readers_are_lazy(tmp_path: Path) -> None:
    path = tmp_path / "many.mbox"
    path.write_bytes(samples.mbox(*(samples.plain(subject=str(i)) for i in range(20))))

    messages = read_mbox(path)

    assert inspect.isgenerator(messages)
    assert [m.subject for m in islice(messages, 3)] == ["0", "1", "2"]


def test_missing_path_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_messages(tmp_path / "nowhere.mbox")


# --- text corpora (constructed) ----------------------------------------------------------------


def test_enron_and_lingspam_layouts(tmp_path: Path) -> None:
    enron = tmp_path / "enron9.tar.gz"
    enron.write_bytes(
        samples.tar_of(
            {
                "enron9/Summary.txt": b"Legitimate\n----------\n",
                "enron9/ham/0001.2001-05-02.owner.ham.txt": b"Subject: re : gas\nto : ann\n",
                "enron9/spam/0002.2004-11-13.GP.spam.txt": b"Subject: cheap meds\nbuy now\n",
            },
            "w:gz",
        )
    )
    ling = tmp_path / "ling"
    (ling / "part1").mkdir(parents=True)
    (ling / "part1" / "3-1msg1.txt").write_bytes(b"Subject: syntax query\n\nre: np np\n")
    (ling / "part1" / "spmsga1.txt").write_bytes(b"Subject: free money\n\nclick\n")

    enron_messages = list(read_enron(enron))
    ling_messages = list(read_lingspam(ling))

    assert [(m.subject, m.text, m.label, m.year) for m in enron_messages] == [
        ("re : gas", "to : ann", "ham", 2001),
        ("cheap meds", "buy now", "spam", 2004),
    ]
    assert all(m.signals is None for m in enron_messages)
    assert [(m.subject, m.text, m.label) for m in ling_messages] == [
        ("syntax query", "re: np np", "ham"),
        ("free money", "click", "spam"),
    ]


def test_nazario_csv_rows_and_a_malformed_row(tmp_path: Path) -> None:
    path = tmp_path / "Nazario.csv"
    path.write_text(
        "sender,receiver,date,subject,body,urls,label\n"
        'Bank <alerts@bank.example>,jose@x.example,"Fri, 30 Oct 2015 00:00:48 -0500",'
        '"Verify","Dear client,\nlog in at http://bank-login.example/ now",1,1\n'
        "only,three,fields\n"
        "a@b.example,,9/28/2017 9:58,Hello,Body,0,1\n",
        encoding="utf-8",
    )
    reader = MailReader()

    messages = list(reader.read_nazario_csv(path))

    assert [(m.subject, m.label, m.year) for m in messages] == [
        ("Verify", "phishing", 2015),
        ("Hello", "phishing", 2017),
    ]
    assert messages[0].from_address == "alerts@bank.example"
    assert messages[0].urls == ("http://bank-login.example/",)
    assert messages[1].source.line == 5
    [issue] = reader.issues
    assert (issue.kind, issue.evidence["line"]) == ("malformed-row", 4)


def test_csv_without_mail_columns_is_not_mail(tmp_path: Path) -> None:
    path = tmp_path / "flows.csv"
    path.write_text("a,b\n1,2\n")
    reader = MailReader()

    assert list(reader.read(path)) == []
    assert kinds(reader) == ["not-mail"]


# --- real corpora, read lazily -----------------------------------------------------------------


def first(messages: Iterator[Message]) -> list[Message]:
    """The first messages of a reader, read lazily; the slice must be full."""
    taken = list(islice(messages, SLICE))
    assert len(taken) == SLICE
    return taken


def test_spamassassin_slices(data_root: Path) -> None:
    folder = data_root / "spamassassin_public_corpus"
    reader = MailReader()

    spam = first(reader.read(folder / "spam.tar.xz"))
    ham = first(reader.read(folder / "easy_ham.tar.xz"))

    assert {m.label for m in spam} == {"spam"} and {m.label for m in ham} == {"ham"}
    assert all(m.source.member and m.source.member.startswith("spam/") for m in spam)
    assert all(m.signals is not None and m.signals.received_hops > 0 for m in ham)
    assert sum(m.from_address is not None for m in spam + ham) >= 95
    assert {m.year for m in ham} == {2002}
    assert sum(bool(m.urls) for m in spam) > 25
    assert all(m.text for m in ham)
    assert not [i for i in reader.issues if i.severity >= Severity.MEDIUM]


def test_nazario_mbox_slice(data_root: Path) -> None:
    reader = MailReader()

    messages = first(reader.read(data_root / "nazario_phishing_mbox" / "phishing0.mbox.xz"))

    assert {m.label for m in messages} == {"phishing"}
    assert [m.source.index for m in messages] == list(range(1, SLICE + 1))
    assert all(m.source.line for m in messages)
    assert sum(bool(m.urls) for m in messages) >= 40
    assert sum(m.html for m in messages) >= 25
    assert not [m for m in messages if m.html and TAG.search(m.text)]
    assert all(
        url.startswith(("hxxp", "fxp", "www[.]")) for m in messages for url in m.defanged_urls
    )


def test_nazario_extracted_text_slice(data_root: Path) -> None:
    path = data_root / "nazario_phishing_mbox" / "phishing2_phishing3_extracted_text.tar.xz"

    messages = first(read_messages(path))

    assert {m.label for m in messages} == {"phishing"}
    assert all(m.signals is None for m in messages)
    assert sum(bool(m.subject) for m in messages) >= 45


def test_phishing_pot_slice(data_root: Path) -> None:
    reader = MailReader()
    path = data_root / "phishing_pot_eml" / "phishing_pot_2019_2024.tar.xz"

    messages = first(reader.read(path, label="phishing"))

    assert {m.label for m in messages} == {"phishing"}
    assert all(m.source.member and m.source.member.endswith(".eml") for m in messages)
    assert sum(m.year in (2022, 2023, 2024) for m in messages) >= 45
    assert sum(m.signals is not None and m.signals.spf is not None for m in messages) >= 25
    assert sum(bool(m.text) for m in messages) >= 45
    for attachment in (a for m in messages for a in m.attachments):
        assert attachment.size >= 0 and "/" in attachment.content_type


def test_enron_slice(data_root: Path) -> None:
    messages = first(read_enron(data_root / "enron_spam_preprocessed" / "enron1.tar.xz"))

    assert {m.label for m in messages} <= {"ham", "spam"}
    assert all(m.year is not None and 1999 <= m.year <= 2005 for m in messages)
    assert all(m.source.member and m.source.member.endswith(".txt") for m in messages)


def test_lingspam_slice(data_root: Path) -> None:
    path = data_root / "lingspam_public_bare" / "lingspam_public_bare.tar.xz"

    messages = list(islice(read_lingspam(path), 400))

    assert {m.label for m in messages} == {"ham", "spam"}
    assert all(m.subject or m.text for m in messages)


def test_nazario_csv_slice(data_root: Path) -> None:
    path = data_root / "nazario_curated_csv_2015_2022" / "Nazario.csv.xz"

    messages = first(read_nazario_csv(path))

    assert {m.label for m in messages} == {"phishing"}
    assert all(m.year is not None and 2015 <= m.year <= 2022 for m in messages)
    assert sum(m.from_address is not None for m in messages) >= 45
    assert [m.source.line for m in messages][:1] == [2]
