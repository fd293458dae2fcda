"""webutil.parse_form / FormRequest: forms read as browsers and
SageMathCell's server read them (fields split on "&" only), on a real
twisted.web Request fed bytes through its channel."""
from __future__ import annotations

import json

from twisted.internet.testing import StringTransport
from twisted.web import http, resource, server

from deploy.webutil import FormRequest, parse_form


def test_fields_split_on_ampersands_only():
    assert parse_form(b"code=import numpy as np; print(1)&x=1") == {
        b"code": [b"import numpy as np; print(1)"], b"x": [b"1"]}
    assert parse_form(b"a=1+2%3B3&a=%26&flag&=v&b=") == {
        b"a": [b"1 2;3", b"&"], b"": [b"v"], b"b": [b""]}      # "flag" has no "=": left out, as Twisted does
    assert parse_form(b"") == {}
    assert parse_form(b"k=%ff%fe") == {b"k": [b"\xff\xfe"]}     # bytes stay bytes


class _Echo(resource.Resource):
    isLeaf = True

    def render(self, request):
        return repr(sorted(request.args.items())).encode()


def _serve(raw: bytes, whole: bool = False) -> bytes:
    site = server.Site(_Echo())
    site.requestFactory = FormRequest
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(raw)
    return transport.value() if whole else transport.value().split(b"\r\n\r\n", 1)[1]


def _post(body: bytes, ctype: bytes = b"application/x-www-form-urlencoded", path: bytes = b"/") -> bytes:
    return _serve(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: " + ctype
                  + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)


def test_a_posted_form_and_its_query_string_keep_their_semicolons():
    out = _post(b"code=a; b&n=2", path=b"/?q=x;y&n=1")
    assert out == repr(sorted({b"code": [b"a; b"], b"n": [b"2"], b"q": [b"x;y"]}.items())).encode()
    got = _serve(b"GET /?code=a;b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert got == repr([(b"code", [b"a;b"])]).encode()


def test_other_bodies_are_not_read_as_forms_and_multipart_stays_twisteds():
    assert _post(b"code=a; b", ctype=b"application/json", path=b"/?q=1") == repr([(b"q", [b"1"])]).encode()
    body = (b"--B\r\nContent-Disposition: form-data; name=\"code\"\r\n\r\na; b\r\n--B--\r\n")
    assert _post(body, ctype=b"multipart/form-data; boundary=B") == repr([(b"code", [b"a; b"])]).encode()
    assert http.parse_qs(b"code=a;b", 1) == {b"code": [b"a"]}     # why: Twisted's own reading


def test_a_multipart_body_that_cannot_be_read_gets_a_json_400():
    raw = b"garbage\x00\x01"
    whole = _serve(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\n"
                   b"Content-Length: " + str(len(raw)).encode() + b"\r\n\r\n" + raw, whole=True)
    head, _, body = whole.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"Content-Type: application/json" in head
    assert json.loads(body)["error"] == "bad_body" and "multipart" in json.loads(body)["message"]
    # what twisted.web would have said: a bare 400, no body, no reason
    site = server.Site(_Echo())
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\n"
                         b"Content-Length: " + str(len(raw)).encode() + b"\r\n\r\n" + raw)
    assert transport.value() == b"HTTP/1.1 400 Bad Request\r\n\r\n"


def test_without_a_semicolon_the_reading_is_twisteds_own():
    # reparse_form_args leaves such requests as Twisted read them: the same
    for qs in (b"a=1&b=&c", b"=v&x=1", b"a=%20+b&a=2", b"", b"&&a=1&", b"a==b", b"k=%ff"):
        assert parse_form(qs) == http.parse_qs(qs, 1), qs


def test_a_method_a_resource_lacks_is_a_json_405_naming_the_ones_it_has():
    from twisted.web.test.requesthelper import DummyRequest

    from deploy.webutil import MethodsResource

    class PostOnly(MethodsResource):
        isLeaf = True

        def render_POST(self, request):
            return b"posted"

    class Readable(PostOnly):
        def render_GET(self, request):
            return b"read"

    for resource, method, allow in ((PostOnly(), b"HEAD", b"POST"), (PostOnly(), b"PUT", b"POST"),
                                    (Readable(), b"DELETE", b"GET, HEAD, POST")):
        request = DummyRequest([b""])
        request.method = method
        body = resource.render(request)
        assert request.responseCode == 405 and request.responseHeaders.getRawHeaders(b"allow") == [allow]
        assert json.loads(body)["error"] == "method-not-allowed" and method.decode() in json.loads(body)["message"]
    request = DummyRequest([b""])
    request.method = b"HEAD"
    assert Readable().render(request) == b"read"          # HEAD is GET's
