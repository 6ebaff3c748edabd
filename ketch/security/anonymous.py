"""The public no-identity client certificate.

gRPC's Python API offers a server either no client certificates at all or required, verified
ones: not Go's VerifyClientCertIfGiven, which kube-apiserver uses so that one port serves both
certificate users and bearer-token users (and agents joining with a bootstrap token). So Ketch's
API server requires a certificate and trusts, beside its client CA, this public CA (its key was
thrown away once this one certificate was signed; the certificate's key is published right
here): a client without a certificate of its own (a bearer token, a joining agent, a kubeconfig
with no client certificate) presents this one. It names nobody: the x509 authenticator checks
every certificate against the client CA again and ignores this one, so such a request is
authenticated by its token or refused as Unauthorized.

Made once by `scripts/make-no-identity-cert.py`; valid until 2126.
"""

CA_CERT = b"""\
-----BEGIN CERTIFICATE-----
MIIBkjCCATigAwIBAgIUeXxNvZHIKyixsntH9OO8ezvKsuUwCgYIKoZIzj0EAwIw
JjEkMCIGA1UEAwwba2V0Y2ggcHVibGljIG5vLWlkZW50aXR5IENBMCAXDTI2MTIw
NjA3MzMwNVoYDzIxMjYxMTEyMDczODA1WjAmMSQwIgYDVQQDDBtrZXRjaCBwdWJs
aWMgbm8taWRlbnRpdHkgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQL2UNX
awYzFSMoW97ghd6bNoeW7GzS33D9AN8pCyYySSIa1Hz7xIvl7CSNM3lJaXdMsYxK
sjoZNCcipbJw1XmIo0IwQDAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIC
pDAdBgNVHQ4EFgQUQvETBro/v0kLtI/YsBbpWp20DbswCgYIKoZIzj0EAwIDSAAw
RQIhAMuhn/zAckRqU/SF+X3qsO+0kojdqb2XKH+Pb7ixpYWFAiAJIXLQGcFJbAkp
hyzhi9YoOXt/P9YTiBCrbMLhNR9vrw==
-----END CERTIFICATE-----
"""

CERT = b"""\
-----BEGIN CERTIFICATE-----
MIIBmzCCAUKgAwIBAgIUBFat9fW07okpoJzZSGpkwi1k5RYwCgYIKoZIzj0EAwIw
JjEkMCIGA1UEAwwba2V0Y2ggcHVibGljIG5vLWlkZW50aXR5IENBMCAXDTI2MTIw
NjA3MzMwNVoYDzIxMjYxMTEyMDczODA1WjAcMRowGAYDVQQDDBFrZXRjaDpuby1p
ZGVudGl0eTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABPyi8FSmj74uKOEFl/EO
o5IqklRaoNvIwVkFrtTdOecvQlTuSYItmdQgr4bhvRXVZlICJA+esNnQHwSV/YtC
4TqjVjBUMAwGA1UdEwEB/wQCMAAwDgYDVR0PAQH/BAQDAgWgMBMGA1UdJQQMMAoG
CCsGAQUFBwMCMB8GA1UdIwQYMBaAFELxEwa6P79JC7SP2LAW6VqdtA27MAoGCCqG
SM49BAMCA0cAMEQCIE42gKqjOjvLWzwWv2OjmZ1mN5joNLewveoIOykHnEqcAiA4
yafNs3/HSmuU2kVriMzoUD/Rc+ViyWBkAOZ7uOFc8g==
-----END CERTIFICATE-----
"""

KEY = b"""\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg4XJ+sHEWl06T4kqQ
rU4ks0n4S7/7YLbasSqEvBZTpaKhRANCAAT8ovBUpo++LijhBZfxDqOSKpJUWqDb
yMFZBa7U3TnnL0JU7kmCLZnUIK+G4b0V1WZSAiQPnrDZ0B8Elf2LQuE6
-----END PRIVATE KEY-----
"""
