"""``python -m certs.devca --dir DIR [--hosts localhost,127.0.0.1,::1]``

Makes a development certificate authority and a server certificate signed by
it, for the local cluster and the tests.  Idempotent: an existing CA is
reused while valid; the server certificate is renewed when it expires within
30 days or does not name the requested hosts.  Files in DIR:

    ca.pem, ca.key          the CA (trust ca.pem in a browser or client to test)
    server.crt, server.key  the edge's certificate and key (key 0600)
    chain.pem               the intermediate chain to send (here: the CA)
    server.pem              key + certificate + chain in one file

Real deployments use real certificates instead (see certs/README.md).
"""
from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

RENEW_BEFORE = dt.timedelta(days=30)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _write(path: str, data: bytes, mode: int) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load(path: str):
    with open(path, "rb") as f:
        return f.read()


def san_for(hosts: list[str]) -> list[x509.GeneralName]:
    names = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return names


def make_ca(directory: str):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cellstack development CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5)).not_valid_after(_now() + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write(os.path.join(directory, "ca.key"), _key_pem(key), 0o600)
    _write(os.path.join(directory, "ca.pem"), cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return key, cert


def load_ca(directory: str):
    try:
        cert = x509.load_pem_x509_certificate(_load(os.path.join(directory, "ca.pem")))
        key = serialization.load_pem_private_key(_load(os.path.join(directory, "ca.key")), None)
    except (OSError, ValueError):
        return None
    if cert.not_valid_after_utc - _now() < RENEW_BEFORE:
        return None
    return key, cert


def server_cert_ok(directory: str, hosts: list[str], ca_cert) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(_load(os.path.join(directory, "server.crt")))
        serialization.load_pem_private_key(_load(os.path.join(directory, "server.key")), None)
    except (OSError, ValueError):
        return False
    if cert.issuer != ca_cert.subject or cert.not_valid_after_utc - _now() < RENEW_BEFORE:
        return False
    try:
        have = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return False
    return set(san_for(hosts)) <= have


def make_server(directory: str, hosts: list[str], ca_key, ca_cert) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5)).not_valid_after(_now() + dt.timedelta(days=397))
            .add_extension(x509.SubjectAlternativeName(san_for(hosts)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    chain_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    _write(os.path.join(directory, "server.key"), _key_pem(key), 0o600)
    _write(os.path.join(directory, "server.crt"), cert_pem, 0o644)
    _write(os.path.join(directory, "chain.pem"), chain_pem, 0o644)
    _write(os.path.join(directory, "server.pem"), _key_pem(key) + cert_pem + chain_pem, 0o600)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m certs.devca", description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", required=True, help="where the files go (made if missing)")
    p.add_argument("--hosts", default="localhost,127.0.0.1,::1", help="names and addresses the certificate covers")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    os.makedirs(args.dir, exist_ok=True)
    ca = load_ca(args.dir)
    made = []
    if ca is None:
        ca = make_ca(args.dir)
        made.append("CA")
    if made or not server_cert_ok(args.dir, hosts, ca[1]):
        make_server(args.dir, hosts, *ca)
        made.append("server certificate")
    if not args.quiet:
        print(f"certs: {' and '.join(made) + ' made' if made else 'up to date'} in {args.dir} for {', '.join(hosts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
