#!/usr/bin/env python3
"""Writes the two binary documents of the sample knowledge base from the text below:
docs/security-policy.pdf (three pages, a text layer in Helvetica) and docs/travel-policy.docx
(Word paragraphs with heading styles). Standard library only; the outputs are committed, so
this runs only when the text changes."""

import textwrap
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCS = HERE / "docs"

SECURITY_TITLE = "Brightloom Information Security Policy"
SECURITY_PAGES = [
    [
        "Information Security Policy",
        "This policy applies to every employee, contractor and partner who uses Brightloom "
        "systems. The security lead owns it and reviews it every year in January.",
        "Passwords and sign-in. Passwords must be at least 14 characters long and unique to "
        "each system. Use the company password manager to create and store them. Multi-factor "
        "authentication is mandatory for email, the web shop back office, the HR portal and "
        "the code repositories. Never share a password, not even with IT.",
        "Devices. Company laptops use full-disk encryption and lock the screen after five "
        "minutes without use. Install updates within seven days of release. Private devices "
        "may read email through the mobile app but must not store customer data.",
    ],
    [
        "Phishing and incidents",
        "If an email asks you to sign in, pay an invoice or open an attachment you did not "
        "expect, do not click. Forward it to security@brightloom.example and delete it.",
        "Report a suspected security incident, such as a lost laptop or a password typed into "
        "a fake page, to the security lead within one hour of noticing it, by phone on "
        "extension 4400. Reporting quickly is never punished; hiding an incident is.",
        "The security lead decides within four hours whether customers or the data protection "
        "authority must be informed. Personal data breaches are reported to the authority "
        "within 72 hours.",
    ],
    [
        "Customer data",
        "Customer data may only be used for the purpose it was collected for: orders, warranty, "
        "service and, with consent, newsletters. Invoices are kept for six years because tax "
        "law requires it. Other customer records are deleted two years after the last order or "
        "service contact.",
        "Exports of customer data to spreadsheets are not allowed. Use the reports in the back "
        "office, which hide payment details. Support staff see only the last four digits of a "
        "card number.",
    ],
]

TRAVEL_TITLE = "Travel and Expenses Policy"
TRAVEL = [
    ("Title", TRAVEL_TITLE),
    (None, "This policy explains how to book business travel and claim expenses at Brightloom. "
           "Finance keeps it up to date."),
    ("Heading1", "Booking travel"),
    (None, "Take the train for trips under 600 kilometres each way. Book economy class for "
           "flights; business class is allowed only for flights longer than eight hours. All "
           "travel is booked through the Wayfarer travel desk so that we know where colleagues "
           "are in an emergency."),
    ("Heading1", "Hotels"),
    (None, "Hotels may cost up to 140 EUR per night, or up to 190 EUR per night in capital "
           "cities. Choose a hotel within 30 minutes of where you work on the trip."),
    ("Heading1", "Meals and allowances"),
    (None, "On travel days you receive a meal allowance of 40 EUR per day. If a customer or "
           "supplier pays for a meal, the allowance for that day is reduced by 15 EUR."),
    ("Heading2", "Using your own car"),
    (None, "When a car is needed and no company car is free, you may drive your own car and "
           "claim 0.30 EUR per kilometre. Parking and tolls are refunded with a receipt."),
    ("Heading1", "Claiming expenses"),
    (None, "Submit expenses within 30 days of the trip in the Ledgerly app, with a photo of "
           "every receipt over 10 EUR. Your manager approves the claim and the money is paid "
           "with the next salary."),
]


def pdf_escape(text):
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def write_pdf(path, title, pages):
    objects = []

    def add(body):
        objects.append(body)
        return len(objects)

    catalog = add(None)
    pages_obj = add(None)
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    info = add(("<< /Title (%s) /Producer (Tunelab sample data) >>" % pdf_escape(title)).encode("latin-1"))
    page_ids = []
    for paragraphs in pages:
        lines = ["BT", "/F1 11 Tf", "14 TL", "72 740 Td"]
        first = True
        for paragraph in paragraphs:
            if not first:
                lines.append("T*")
            first = False
            for line in textwrap.wrap(paragraph, 88):
                lines.append("(%s) Tj T*" % pdf_escape(line))
        lines.append("ET")
        stream = "\n".join(lines).encode("latin-1")
        content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        page = add(
            (
                "<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] "
                "/Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>"
                % (pages_obj, font, content)
            ).encode("latin-1")
        )
        page_ids.append(page)
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % pages_obj
    kids = " ".join("%d 0 R" % p for p in page_ids)
    objects[pages_obj - 1] = ("<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(page_ids))).encode()

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, catalog, info, xref)
    path.write_bytes(bytes(out))


def xml_escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_docx(path, title, paragraphs):
    body = []
    for style, text in paragraphs:
        props = '<w:pPr><w:pStyle w:val="%s"/></w:pPr>' % style if style else ""
        body.append('<w:p>%s<w:r><w:t xml:space="preserve">%s</w:t></w:r></w:p>' % (props, xml_escape(text)))
    document = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        "<w:body>%s</w:body></w:document>" % "".join(body)
    )
    content_types = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
        '<Override PartName="/docProps/core.xml" ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
        "</Types>"
    )
    rels = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>'
        '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties" Target="docProps/core.xml"/>'
        "</Relationships>"
    )
    core = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>%s</dc:title></cp:coreProperties>' % xml_escape(title)
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        # Fixed timestamps keep the file byte-identical between runs.
        for name, data in [
            ("[Content_Types].xml", content_types),
            ("_rels/.rels", rels),
            ("docProps/core.xml", core),
            ("word/document.xml", document),
        ]:
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)


if __name__ == "__main__":
    write_pdf(DOCS / "security-policy.pdf", SECURITY_TITLE, SECURITY_PAGES)
    write_docx(DOCS / "travel-policy.docx", TRAVEL_TITLE, TRAVEL)
    print("wrote", DOCS / "security-policy.pdf", "and", DOCS / "travel-policy.docx")
