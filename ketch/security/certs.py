"""Keys, certificates and signing requests, as kubeadm makes them.

Keys are EC P-256 (ECDSA with SHA-256): a key is made in about a millisecond and a handshake
costs less than with RSA 2048, which matters to an agent that joins and to tests that make a
PKI each. Validity as kubeadm's: the CA 10 years, serving and client certificates 1 year.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = 10 * 365 * 24 * 3600.0
CERT_VALIDITY = 365 * 24 * 3600.0
# Certificates are valid from a little before they are made: clocks of two machines differ.
BACKDATE = 5 * 60.0

PrivateKey = ec.EllipticCurvePrivateKey


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_key(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the private key is not an EC key")
    return key


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def load_certs(pem: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (a --client-ca-file may hold several)."""
    return x509.load_pem_x509_certificates(pem)


def der_sha256(cert: x509.Certificate) -> str:
    """sha256 hex of the certificate's DER: what a join token pins."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def public_key_sha256(key: ec.EllipticCurvePublicKey | x509.Certificate | x509.CertificateSigningRequest) -> str:
    """sha256 hex of a public key's SubjectPublicKeyInfo: which key holds a node name."""
    public = key.public_key() if not isinstance(key, ec.EllipticCurvePublicKey) else key
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _name(cn: str, orgs: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _general_names(names: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    seen: set[str] = set()
    for name in names:
        if not name or name in seen:
            continue
        seen.add(name)
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


@dataclass(frozen=True)
class Issued:
    """A key and its certificate, PEM."""

    cert: bytes
    key: bytes


@dataclass(frozen=True)
class Authority:
    """A CA: its certificate and key, and what it signs."""

    cert: x509.Certificate
    key: PrivateKey

    @classmethod
    def create(cls, cn: str = "ketch-ca", validity: float = CA_VALIDITY) -> Authority:
        key = new_key()
        now = _now()
        public = key.public_key()
        cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(public)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(seconds=BACKDATE))
                .not_valid_after(now + datetime.timedelta(seconds=validity))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                             crl_sign=False, encipher_only=False, decipher_only=False),
                               critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
                .sign(key, hashes.SHA256()))
        return cls(cert, key)

    @classmethod
    def load(cls, cert_pem_bytes: bytes, key_pem_bytes: bytes) -> Authority:
        return cls(load_cert(cert_pem_bytes), load_key(key_pem_bytes))

    @property
    def cert_pem(self) -> bytes:
        return cert_pem(self.cert)

    def sign(self, public: ec.EllipticCurvePublicKey, cn: str, orgs: Sequence[str] = (), *,
             client: bool = False, server: bool = False, sans: Iterable[str] = (),
             validity: float = CERT_VALIDITY) -> x509.Certificate:
        """A leaf certificate for the public key: client and/or server auth; SANs for a server."""
        now = _now()
        not_after = min(now + datetime.timedelta(seconds=validity), self.cert.not_valid_after_utc)
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        usages += [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
        builder = (x509.CertificateBuilder().subject_name(_name(cn, orgs)).issuer_name(self.cert.subject)
                   .public_key(public).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(seconds=min(BACKDATE, validity / 10)))
                   .not_valid_after(not_after)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                key_encipherment=True, data_encipherment=False, key_agreement=False,
                                                key_cert_sign=False, crl_sign=False, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                                  critical=False))
        general = _general_names(sans)
        if general:
            builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def issue(self, cn: str, orgs: Sequence[str] = (), *, client: bool = False, server: bool = False,
              sans: Iterable[str] = (), validity: float = CERT_VALIDITY) -> Issued:
        """A new key and its certificate."""
        key = new_key()
        cert = self.sign(key.public_key(), cn, orgs, client=client, server=server, sans=sans, validity=validity)
        return Issued(cert_pem(cert), key_pem(key))

    def issued(self, cert: x509.Certificate) -> bool:
        """Whether this CA signed the certificate (the signature, not only the names)."""
        return verify_issued_by(cert, [self.cert])


def verify_issued_by(cert: x509.Certificate, cas: Sequence[x509.Certificate]) -> bool:
    for ca in cas:
        if cert.issuer != ca.subject:
            continue
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def user_of(cert: x509.Certificate) -> tuple[str, tuple[str, ...]]:
    """(CN, O...) as Kubernetes' x509 authenticator reads a client certificate."""
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (str(cn[0].value) if cn else ""), tuple(str(o.value) for o in orgs)


def sans_of(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(n) for n in ext.get_values_for_type(x509.DNSName)} | \
        {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}


def covers(cert: x509.Certificate, names: Iterable[str]) -> bool:
    have = sans_of(cert)
    return all(n in have for n in names if n)


def lifetime(cert: x509.Certificate) -> tuple[float, float]:
    """(not before, not after) as UNIX times."""
    return cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()


def renew_at(cert: x509.Certificate, fraction: float = 0.8) -> float:
    """When to ask for a new certificate: at 80 % of its lifetime, as the kubelet does."""
    start, end = lifetime(cert)
    return start + (end - start) * fraction


def fresh(cert: x509.Certificate, now: float, fraction: float = 0.8) -> bool:
    """Valid now and not yet due for renewal."""
    start, _end = lifetime(cert)
    return start <= now < renew_at(cert, fraction)


def make_csr(key: PrivateKey, cn: str, orgs: Sequence[str] = (), sans: Iterable[str] = ()) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(cn, orgs))
    general = _general_names(sans)
    if general:
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def read_csr(pem: bytes) -> x509.CertificateSigningRequest:
    """A signing request whose signature holds (the sender has the key); ValueError otherwise."""
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError as err:
        raise ValueError(f"not a PEM certificate signing request: {err}") from None
    if not csr.is_signature_valid:
        raise ValueError("the certificate signing request's signature does not verify")
    if not isinstance(csr.public_key(), ec.EllipticCurvePublicKey):
        raise ValueError("the certificate signing request's key is not an EC P-256 key")
    return csr


def csr_sans(csr: x509.CertificateSigningRequest) -> list[str]:
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n) for n in ext.get_values_for_type(x509.DNSName)] + \
        [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write a file atomically with the given mode from its creation (keys are never readable
    by others, not even for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
