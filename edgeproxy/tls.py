"""TLS for the edge: a pyOpenSSL server context that can be reloaded.

- TLS 1.2 minimum, forward-secret AEAD ciphers only (ECDHE with AES-GCM or
  ChaCha20-Poly1305; TLS 1.3's suites are all forward secret);
- session resumption on: a session-id context and a server-side session
  cache, plus tickets (Twisted's ``CertificateOptions`` turns both off);
- ALPN ``http/1.1``;
- no renegotiation (a client-initiated one is a cheap way to make a server
  do handshakes; TLS 1.3 has none);
- a TCP close without close_notify is an end, not an error (OpenSSL 3 made
  it one; HTTP's own framing says whether a message was cut short);
- ``reload()`` builds a fresh context from the files; connections made after
  it use the new certificate, open ones keep theirs (SIGHUP in the tap).

``ssl:`` ``--listen`` descriptions (``ssl:8443:interface=127.0.0.1:
privateKey=key.pem:certKey=cert.pem[:extraCertChain=chain.pem]``) are read
here and listened on in ``listeners``.
"""
from __future__ import annotations

import re

from OpenSSL import SSL
from twisted.logger import Logger

CIPHERS = (b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
           b"ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")


class ReloadingContextFactory:
    """Twisted asks ``getContext()`` for each new connection."""

    _log = Logger()

    def __init__(self, cert: str, key: str, chain: str | None = None):
        self.cert, self.key, self.chain = cert, key, chain
        self._context = self._build()

    def _build(self) -> SSL.Context:
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_SINGLE_ECDH_USE
                        | SSL.OP_NO_RENEGOTIATION | SSL.OP_IGNORE_UNEXPECTED_EOF)
        ctx.set_cipher_list(CIPHERS)
        ctx.use_certificate_file(self.cert)
        if self.chain:
            with open(self.chain, "rb") as f:
                from OpenSSL import crypto
                from cryptography import x509
                for cert in x509.load_pem_x509_certificates(f.read()):
                    ctx.add_extra_chain_cert(crypto.X509.from_cryptography(cert))
        ctx.use_privatekey_file(self.key)
        ctx.check_privatekey()
        ctx.set_session_id(b"cellstack-edge")
        ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
        ctx.set_timeout(3600)
        ctx.set_alpn_select_callback(_select_alpn)
        return ctx

    def getContext(self) -> SSL.Context:
        return self._context

    def reload(self) -> bool:
        try:
            self._context = self._build()
        except (OSError, SSL.Error, ValueError) as e:
            self._log.error("certificate reload failed, keeping the old one: {err}", err=str(e))
            return False
        self._log.info("certificate reloaded from {cert}", cert=self.cert)
        return True


def _select_alpn(conn, protocols):
    return b"http/1.1" if b"http/1.1" in protocols else SSL.NO_OVERLAPPING_PROTOCOLS


def parse_ssl_description(desc: str) -> tuple[int, dict[str, str]]:
    """``ssl:PORT:k=v:...`` -> (port, {k: v}); ValueError if malformed.  As in
    Twisted's endpoint strings, ``\\:`` is a colon inside a value (an IPv6
    ``interface=\\:\\:1``)."""
    parts = [p.replace("\\:", ":") for p in re.split(r"(?<!\\):", desc)]
    if parts[0] != "ssl" or len(parts) < 2:
        raise ValueError(f"not an ssl: endpoint: {desc!r}")
    opts = {}
    port = None
    for p in parts[1:]:
        if "=" in p:
            k, v = p.split("=", 1)
            opts[k] = v
        elif port is None:
            port = p
        else:
            raise ValueError(f"unexpected {p!r} in {desc!r}")
    if "port" in opts:
        port = opts.pop("port")
    if port is None or not port.isdigit():
        raise ValueError(f"no port in {desc!r}")
    if "privateKey" not in opts:
        raise ValueError(f"{desc!r} needs privateKey=")
    opts.setdefault("certKey", opts["privateKey"])
    return int(port), opts

