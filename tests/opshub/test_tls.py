"""TLS for the tools: `opshub keys tls` makes a CA and a hub certificate that verify (checked
by cryptography's RFC 5280 verifier), `opshub serve` refuses TLS files it cannot use with one
line, a hub started in a child process serves wss:// and https://, and the HTTP API client
refuses a certificate it cannot verify."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import verification

from client.identity import Authority, KeyFolder
from client.tls import client_context
from opshub.cli import main
from opshub.hubapi import HubApi, registrar
from opshub.hubprocess import HubProcess
from opshub.tls import TlsFiles, trust, write_tls_folder
from protocol.errors import TlsError, UsageError


def _verify(files: TlsFiles, host: str) -> None:
    """Verify the hub certificate for ``host`` against the CA as a TLS client would: chain,
    validity, key usages and subject alternative names. Raises VerificationError."""
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    hub = x509.load_pem_x509_certificate(files.cert.read_bytes())
    try:
        subject: x509.verification.Subject = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        subject = x509.DNSName(host)
    verifier = (verification.PolicyBuilder().store(verification.Store([ca]))
                .time(dt.datetime.now(dt.UTC)).build_server_verifier(subject))
    verifier.verify(hub, [])


def test_tls_keys_tls_writes_a_ca_and_a_hub_certificate_that_verify(tmp_path: Path,
                                                                     capsys) -> None:
    """`opshub keys tls` writes ca.pem, ca.key, hub.pem and hub.key; the hub certificate
    is signed by the CA and valid for exactly the hosts given (an IP as an IP address);
    both keys are readable by their owner only, and the CA's fingerprint is printed."""
    out = tmp_path / "tls"
    assert main(["keys", "tls", "--out", str(out), "--host", "127.0.0.1",
                 "--host", "hub.example.org", "--days", "30"]) == 0
    files = TlsFiles.at(out)
    for host in ("127.0.0.1", "hub.example.org"):
        _verify(files, host)
    with pytest.raises(verification.VerificationError):
        _verify(files, "other.example.org")
    hub = x509.load_pem_x509_certificate(files.cert.read_bytes())
    san = hub.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["hub.example.org"]
    assert hub.not_valid_after_utc - hub.not_valid_before_utc < dt.timedelta(days=31)
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == {
        "ca.pem": 0o644, "ca.key": 0o600, "hub.pem": 0o644, "hub.key": 0o600}
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    printed = capsys.readouterr().out
    assert ca.fingerprint(hashes.SHA256()).hex(":").upper() in printed


def test_tls_keys_tls_defaults_to_the_loopback_names(tmp_path: Path) -> None:
    """Without --host, the certificate is valid for 127.0.0.1 and localhost."""
    assert main(["keys", "tls", "--out", str(tmp_path / "tls")]) == 0
    files = TlsFiles.at(tmp_path / "tls")
    _verify(files, "127.0.0.1")
    _verify(files, "localhost")


def test_tls_keys_tls_refuses_to_replace_a_ca_without_force(tmp_path: Path, capsys) -> None:
    """A folder that holds a CA is not overwritten unless --force is given."""
    out = tmp_path / "tls"
    assert main(["keys", "tls", "--out", str(out)]) == 0
    before = (out / "ca.pem").read_bytes()
    assert main(["keys", "tls", "--out", str(out)]) == 2
    assert "already holds a CA; use --force" in capsys.readouterr().err
    assert (out / "ca.pem").read_bytes() == before
    assert main(["keys", "tls", "--out", str(out), "--force"]) == 0
    assert (out / "ca.pem").read_bytes() != before


def test_tls_keys_tls_refuses_a_host_that_is_not_a_name(tmp_path: Path, capsys) -> None:
    """A --host that is neither an IP address nor a DNS name is refused with its value."""
    assert main(["keys", "tls", "--out", str(tmp_path / "tls"), "--host", "hub:8765"]) == 2
    assert "'hub:8765' is neither an IP address nor a DNS name" in capsys.readouterr().err


def test_tls_trust_refuses_a_ca_without_a_wss_url(tls_files: TlsFiles) -> None:
    """--tls-ca with only ws:// URLs would change nothing: refused, naming the URL."""
    with pytest.raises(UsageError, match="goes with a wss:// hub URL"):
        trust(["ws://127.0.0.1:1/v1/ws"], tls_files.ca)
    assert trust(["wss://127.0.0.1:1/v1/ws"], tls_files.ca) is not None
    assert trust(["wss://127.0.0.1:1/v1/ws"], None) is None


def test_tls_client_context_refuses_a_file_that_holds_no_certificate(
        tls_files: TlsFiles) -> None:
    """A --tls-ca that is not a PEM file of certificates (here: a private key) is refused
    with the file's name."""
    with pytest.raises(UsageError, match=r"hub\.key: not a PEM file of CA certificates"):
        client_context(tls_files.key)


def _serve_args(tmp_path: Path, cert: Path, key: Path) -> list[str]:
    KeyFolder(tmp_path / "keys").write(Authority.generate(), [])
    return ["serve", "--keys", str(tmp_path / "keys"), "--db", str(tmp_path / "hub.db"),
            "--port", "0", "--tls-cert", str(cert), "--tls-key", str(key)]


def test_tls_serve_refuses_a_key_that_does_not_match(tmp_path: Path, tls_files: TlsFiles,
                                                     capsys) -> None:
    """`opshub serve` with a certificate and another certificate's key exits 2 with one
    line naming both files, before anything listens."""
    other = write_tls_folder(tmp_path / "other")
    assert main(_serve_args(tmp_path, tls_files.cert, other.key)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"--tls-cert {tls_files.cert} --tls-key {other.key}: not a PEM certificate" in err
    assert not (tmp_path / "hub.db").exists()


def test_tls_serve_needs_the_certificate_and_the_key(tmp_path: Path, tls_files: TlsFiles,
                                                     capsys) -> None:
    """--tls-cert without --tls-key is refused: they go together."""
    args = _serve_args(tmp_path, tls_files.cert, tls_files.key)
    assert main(args[:-2]) == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err


@pytest.mark.slow
async def test_tls_hub_process_serves_wss_and_https(tmp_path: Path,
                                                    tls_files: TlsFiles) -> None:
    """A hub started with a TLS folder announces wss:// and https:// URLs; its HTTP API
    answers a client that trusts the CA, and refuses one that does not with a TlsError
    naming the URL and the reason."""
    authority = Authority.generate()
    KeyFolder(tmp_path / "keys").write(authority, [])
    signer = registrar(authority, now=int(time.time()))
    with HubProcess(tmp_path / "keys", tmp_path / "hub.db", tls=tls_files) as hub:
        assert hub.url.startswith("wss://127.0.0.1:")
        assert hub.http.startswith("https://127.0.0.1:")
        assert hub.metrics.startswith("http://127.0.0.1:")  # monitoring stays plain http
        async with HubApi(hub.url, signer, ssl=client_context(tls_files.ca)) as api:
            assert await api.operations() == set()
        async with HubApi(hub.url, signer) as api:
            with pytest.raises(TlsError) as refused:
                await api.operations()
    assert str(refused.value) == (
        f"TLS with {hub.url} failed: the hub's certificate does not verify (unable to get "
        f"local issuer certificate); trust the CA that signed it (--tls-ca FILE)")
    assert json.dumps(str(refused.value)).count("\\n") == 0
