"""Method overrides as the frameworks behind the gateway read them (``overrides.py``): names as
PHP mangles them, and a multipart body's part headers scanned as it streams, whatever the
chunks' sizes."""

from __future__ import annotations

import pytest

from piigate.errors import BadRequest
from piigate.gateway.http.overrides import (
    MAX_PART_HEADERS,
    FormScan,
    MultipartScan,
    body_kind,
    body_names_method,
    boundaries_of,
    names_method,
)


@pytest.mark.parametrize(
    "query",
    [
        "_method=DELETE",
        "a=1&_METHOD=put",
        "%5Fmethod=DELETE",
        ".method=DELETE",  # PHP: a dot becomes _
        "%20_method=DELETE",  # PHP: leading spaces dropped
        "+_method=DELETE",
        "[method=DELETE",  # PHP: an unmatched [ becomes _
        "_method[]=DELETE",  # an array of that name
        "_method[x]=DELETE",
        "_method%00junk=DELETE",  # PHP cuts a name at a NUL
        "a=1;_method=DELETE",  # Rack 2 splits at ; too
        "a=1; _method=DELETE",
    ],
)
def test_names_a_method_as_frameworks_read_it(query: str) -> None:
    assert names_method(query)


@pytest.mark.parametrize(
    "query", ["", "method=DELETE", "my_method=x", "_methods=x", "_methodology=x", "a=_method"]
)
def test_other_names_are_not_a_method(query: str) -> None:
    assert not names_method(query)


@pytest.mark.parametrize(
    ("method", "content_type", "kind"),
    [
        ("POST", None, "bare"),  # Rack parses a POST without a media type as a form
        ("POST", "application/x-www-form-urlencoded; charset=utf-8", "form"),
        ("POST", "Application/JSON", "json"),
        ("POST", "application/vnd.api+json", "json"),
        ("POST", "multipart/form-data; boundary=b", "multipart"),
        ("POST", "multipart/mixed; boundary=b", "multipart"),
        ("POST", "text/plain", None),
        ("POST", "application/x-www-form-urlencoded, text/plain", "form"),  # Rack: the first
        ("POST", "text/plain; x=/json", "json"),  # Laravel: "/json" anywhere
        ("POST", " Multipart/Form-Data;boundary=b", "multipart"),
        ("PUT", "application/x-www-form-urlencoded", None),
        ("GET", None, None),
    ],
)
def test_body_kind(method: str, content_type: str | None, kind: str | None) -> None:
    headers = [] if content_type is None else [("content-type", content_type)]
    assert body_kind(method, headers) == kind


def test_every_reading_of_the_boundary_is_kept() -> None:
    def read(value: str) -> tuple[bytes, ...]:
        return boundaries_of([("content-type", value)])

    assert read('multipart/form-data; boundary="a b;c"') == (b"a b", b"a b;c")
    assert read("multipart/form-data;boundary=XyZ") == (b"XyZ",)
    assert read("multipart/form-data; BOUNDARY=XyZ") == (b"XyZ",)
    # PHP takes the first "boundary=" (even in xboundary=), Rack the last; both cut at a comma
    assert read("multipart/form-data; xboundary=AAA; boundary=BBB") == (b"AAA", b"BBB")
    assert read("multipart/form-data; boundary=AAA,BBB") == (b"AAA", b"AAA,BBB")
    for value in ("multipart/form-data", "multipart/form-data; boundary=", "text/plain"):
        with pytest.raises(BadRequest, match="no boundary"):
            read(value)
    with pytest.raises(BadRequest, match="too many ways"):
        read("multipart/form-data; " + "; ".join(f"boundary=b{i}" for i in range(9)))


def test_a_body_is_read_along_every_boundary() -> None:
    named = b'--AAA\r\nContent-Disposition: form-data; name="_method"\r\n\r\nDELETE\r\n--AAA--'
    for value in ("xboundary=AAA; boundary=BBB", "boundary=BBB; boundary=AAA", "boundary=AAA,B"):
        headers = [("content-type", f"multipart/form-data; {value}")]
        assert body_names_method("multipart", named, headers), value
    assert not body_names_method("multipart", named, [("content-type", "multipart/x; boundary=B")])


def _body(*headers: str, crlf: bytes = b"\r\n") -> bytes:
    """A multipart body (boundary ``XyZ``) of parts with these header blocks."""
    parts = [
        b"--XyZ" + crlf + h.encode("latin-1").replace(b"\n", crlf) + crlf + crlf + b"v" + crlf
        for h in headers
    ]
    return b"preamble" + crlf + b"".join(parts) + b"--XyZ--" + crlf + b"epilogue"


def _found(body: bytes, *, split: int | None = None, step: int | None = None) -> bool:
    scan = MultipartScan(b"XyZ")
    if step is not None:
        for at in range(0, len(body), step):
            scan.feed(body[at : at + step])
    elif split is not None:
        scan.feed(body[:split])
        scan.feed(body[split:])
    else:
        scan.feed(body)
    return scan.found


NAMED = [
    'Content-Disposition: form-data; name="_method"',
    "content-disposition:form-data;name=_Method",
    'Content-Disposition: form-data; name="\\_method"',  # a quoted-pair is the character
    'Content-Disposition: form-data; name=" _method"',
    'Content-Disposition: form-data; name=".method"',
    "Content-Disposition: form-data; name*=UTF-8''%5Fmethod",
    'Content-Disposition: form-data; name="_method[]"',
    'Content-Disposition: form-data;\n name="_method"',  # folded
    'Content-Disposition: form-data; filename="x\\"; name=_method"',  # a lenient regex's find
    "Content-ID: <_method>",  # Rack's name for a part without one
]


@pytest.mark.parametrize("header", NAMED)
def test_a_part_named_method_is_found_at_any_split(header: str) -> None:
    body = _body('Content-Disposition: form-data; name="a"', header)
    assert _found(body)
    assert _found(body, step=1)
    assert all(_found(body, split=at) for at in range(len(body) + 1))
    assert _found(body.replace(b"\r\n", b"\n"))  # bare LF, which lenient parsers take


def test_a_body_naming_no_method_is_not_found_at_any_split() -> None:
    body = _body(
        'Content-Disposition: form-data; name="method"',
        'Content-Disposition: form-data; name="file"; filename="notes.txt"\n'
        "Content-Type: text/plain",
    ).replace(b"v\r\n--XyZ--", b'name="_method" in content\r\n--XyZ--')
    assert not _found(body)
    assert not _found(body, step=1)
    assert not any(_found(body, split=at) for at in range(len(body) + 1))


def test_parts_after_the_close_delimiter_are_read_too() -> None:
    """A lenient parser may read on past ``--boundary--``: so does the scan."""
    body = _body('Content-Disposition: form-data; name="a"')
    body += b'\r\n--XyZ\r\nContent-Disposition: form-data; name="_method"\r\n\r\nDELETE\r\n'
    assert _found(body)
    assert all(_found(body, split=at) for at in range(len(body) + 1))


def test_part_headers_too_long_are_refused() -> None:
    scan = MultipartScan(b"XyZ")
    scan.feed(b"--XyZ\r\nX-Pad: ")
    with pytest.raises(BadRequest, match="headers too long"):
        for _ in range(MAX_PART_HEADERS // 1024 + 2):
            scan.feed(b"a" * 1024)


def test_a_whole_body_the_gate_read() -> None:
    headers = [("content-type", "multipart/form-data; boundary=XyZ")]
    assert body_names_method("multipart", _body(NAMED[0]), headers)
    assert not body_names_method("multipart", _body('Content-Disposition: x; name="a"'), headers)
    assert body_names_method("form", b"a=1&_method=PUT", [])
    assert body_names_method("json", b'{"_Method": "PUT"}', [])
    assert not body_names_method("json", b'[{"_method": "PUT"}]', [])
    # the document the gate read already, when it read one: not parsed again
    raw = b'{"_Method": "PUT", "a": 1}'
    assert body_names_method("json", raw, [], {"_Method": "PUT", "a": 1})
    assert not body_names_method("json", b'{"a": 1}', [], {"a": 1})


@pytest.mark.parametrize(
    ("body", "found"),
    [
        (b"a=1&_method=DELETE", True),
        (b"a=1;_method=DELETE", True),  # Rack 2
        (b"%5Fmethod=PUT&a=1", True),
        (b"a=1&+_method=PUT", True),
        (b"_METHOD=put", True),
        (b"a=1&" + b" " * 20_000 + b"_method=PUT", True),  # Rack drops spaces after a &
        (b"a=_method&b=_method", False),  # values, not names
        (b"a=1&_methods=PUT", False),
        (b"a=1&_method", False),  # no value: nothing to run as
        (b"\x00\xff binary & no = form ; at all", False),
    ],
)
def test_a_form_streamed_is_read_for_a_method_at_any_split(body: bytes, found: bool) -> None:
    for at in range(len(body) + 1):
        scan = FormScan()
        scan.feed(body[:at])
        scan.feed(body[at:])
        assert scan.found is found, (body, at)
    scan = FormScan()
    for byte in body:
        scan.feed(bytes([byte]))
    assert scan.found is found
