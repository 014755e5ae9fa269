"""End-to-end tests of the hub's JSON/Prometheus HTTP API against a real hub on 127.0.0.1.

The API is metadata only: it describes operations, the directory and counters, and
must never return a message payload or anything private. Its /v1/ requests are signed
(protocol/http_auth.py) and each caller sees only what it may (hub/api_auth.py); health
and metrics are on a listener of their own.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from client.connection import TIMEOUT, AgentConnection, Delivered
from client.identity import Authority, UnitIdentity, UnitSpec
from hub.app import RunningHub
from protocol.credentials import SignedCredential
from protocol.errors import AuthError, Code, RequestError
from protocol.frames import PROTOCOL_VERSION
from tests.conftest import STORES, UNITS, Keys, create_operation

pytestmark = pytest.mark.parametrize("store", STORES, indirect=True)

OP = "OP-REEF"
MEMBERS = ["JM-CUSTOMS", "TT-POLICE"]
NEWCOMER = UnitSpec("GY-POLICE", "GY", "police")

Connect = Callable[[str], Awaitable[AgentConnection]]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def signed(identity: UnitIdentity, method: str, url: str, body: bytes = b"", *,
           at: int | None = None, bring: bool = False) -> dict[str, str]:
    """The headers of a request signed by ``identity`` (``bring``: with its credential)."""
    return identity.sign_request(method, url[url.index("/v1/"):], body,
                                 at=int(time.time()) if at is None else at, bring=bring)


async def call(http: aiohttp.ClientSession, method: str, url: str, *,
               by: UnitIdentity | None = None, data: bytes = b"",
               headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """One bounded request (signed by ``by``): status, content type and raw body."""
    headers = dict(headers or {})
    if by is not None:
        headers.update(signed(by, method, url, data))
    async with asyncio.timeout(TIMEOUT), http.request(method, url, data=data or None,
                                                      headers=headers) as resp:
        return resp.status, resp.content_type, await resp.read()


async def get_json(http: aiohttp.ClientSession, url: str, *,
                   by: UnitIdentity | None = None) -> tuple[int, Any]:
    status, ctype, body = await call(http, "GET", url, by=by)
    assert ctype == "application/json", body
    return status, json.loads(body)


async def post_json(http: aiohttp.ClientSession, url: str, *, by: UnitIdentity | None = None,
                    json_body: Any = None, data: bytes = b"") -> tuple[int, Any]:
    if json_body is not None:
        data = json.dumps(json_body).encode()
    status, ctype, body = await call(http, "POST", url, by=by, data=data,
                                     headers={"Content-Type": "application/json"})
    assert ctype == "application/json", body
    return status, json.loads(body)


def parse_metrics(text: str) -> dict[str, float]:
    """Strict enough Prometheus text parsing: every sample's family is typed before it."""
    types: dict[str, str] = {}
    samples: dict[str, float] = {}
    sample = re.compile(r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<labels>\{[^}]*\})? (?P<v>\S+)")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in {"counter", "gauge"}, line
            assert name not in types, f"{name} typed twice"
            types[name] = kind
            continue
        m = sample.fullmatch(line)
        assert m is not None, f"not a sample line: {line!r}"
        assert m["name"] in types, f"{m['name']} has no # TYPE line before it"
        samples[m["name"] + (m["labels"] or "")] = float(m["v"])
    return samples


async def scrape(http: aiohttp.ClientSession, hub: RunningHub) -> dict[str, float]:
    status, ctype, body = await call(http, "GET", f"{hub.metrics_http}/metrics")
    assert (status, ctype) == (200, "text/plain")
    return parse_metrics(body.decode())


async def operation_with_traffic(agents: Connect, keys: Keys, payloads: list[bytes]) -> None:
    """OCU-BB creates OP, both members subscribe, OCU-BB publishes, both members receive."""
    ocu = await agents("OCU-BB")
    await create_operation(ocu, keys, OP, MEMBERS)
    readers = [await agents(u) for u in MEMBERS]
    for r in readers:
        await r.subscribe(OP, after=1)
    async with asyncio.timeout(TIMEOUT):
        seqs = await asyncio.gather(*(ocu.publish_nowait(OP, p) for p in payloads))
    for r in readers:
        for seq, payload in zip(seqs, payloads, strict=True):
            got = await r.next_delivery()
            assert isinstance(got, Delivered)
            assert (got.seq, got.payload) == (seq, payload)


def encode_credential(signed: SignedCredential) -> dict[str, str]:
    return {"credential": base64.b64encode(signed.body).decode(),
            "signature": base64.b64encode(signed.signature).decode()}


async def assert_connects(hub: RunningHub, identity: UnitIdentity) -> None:
    async with AgentConnection(hub.url, identity, reconnect=False) as conn:
        assert conn.connected


async def assert_refused(hub: RunningHub, identity: UnitIdentity, code: str) -> None:
    conn = AgentConnection(hub.url, identity, reconnect=False)
    try:
        with pytest.raises(AuthError) as info:
            await conn.connect()
    finally:
        await conn.close()
    assert info.value.code == code


# --- health and operations -----------------------------------------------------------------


async def test_healthz_reports_hub_status_on_the_monitoring_listener(hub, agents, keys, http):
    """GET /healthz (on its own listener) names the hub and protocol and counts operations,
    connections, units; the agents' port does not serve it."""
    ocu = await agents("OCU-BB")
    await create_operation(ocu, keys, OP, MEMBERS)
    assert hub.metrics_port != hub.port
    status, body = await get_json(http, f"{hub.metrics_http}/healthz")
    assert status == 200
    assert body == {"status": "ok", "hub": "opshub", "protocol": PROTOCOL_VERSION,
                    "operations": 1, "connections": 1, "units": len(UNITS)}
    for path in ("/healthz", "/metrics"):
        status, _ = await get_json(http, f"{hub.http}{path}")
        assert status == 404, path


async def test_a_registrar_lists_every_operation(hub, agents, keys, http):
    """GET /v1/operations by a registrar (role ocu) lists each operation's name, admin,
    epoch, members, head, subscribers."""
    ocu = await agents("OCU-BB")
    await create_operation(ocu, keys, OP, MEMBERS)
    await create_operation(ocu, keys, "OP-ATOLL", ["DM-CUSTOMS"])
    reader = await agents("JM-CUSTOMS")
    await reader.subscribe(OP, after=0)
    expected = {"operations": [
        {"op": "OP-ATOLL", "name": "Operation OP-ATOLL", "admin": "OCU-BB", "epoch": 0,
         "members": ["DM-CUSTOMS", "OCU-BB"], "head": 1, "subscribers": 0},
        {"op": OP, "name": f"Operation {OP}", "admin": "OCU-BB", "epoch": 0,
         "members": ["JM-CUSTOMS", "OCU-BB", "TT-POLICE"], "head": 1, "subscribers": 1},
    ]}
    url, by = f"{hub.http}/v1/operations", keys["OCU-BB"]
    async with asyncio.timeout(TIMEOUT):  # on JetStream the heads follow the feed
        while (await get_json(http, url, by=by))[1] != expected:
            await asyncio.sleep(0.01)


async def test_a_unit_sees_only_its_own_operations(hub, agents, keys, http):
    """A unit that is not a registrar lists only the operations it belongs to; another
    operation is a 404 to it, the same answer as one that does not exist."""
    ocu = await agents("OCU-BB")
    await create_operation(ocu, keys, OP, MEMBERS)
    await create_operation(ocu, keys, "OP-ATOLL", ["DM-CUSTOMS"])
    for unit, visible in [("JM-CUSTOMS", [OP]), ("DM-CUSTOMS", ["OP-ATOLL"]),
                          ("INTERPOL-LO", [])]:
        status, body = await get_json(http, f"{hub.http}/v1/operations", by=keys[unit])
        assert status == 200
        assert [o["op"] for o in body["operations"]] == visible, unit
    status, body = await get_json(http, f"{hub.http}/v1/operations/OP-ATOLL",
                                  by=keys["JM-CUSTOMS"])
    assert (status, body["error"]["code"]) == (404, Code.UNKNOWN_OPERATION)


async def test_operation_follows_membership_and_log(hub, agents, keys, http):
    """GET /v1/operations/{op} shows the epoch, members and head after a change and a publish."""
    ocu = await agents("OCU-BB")
    admin = await create_operation(ocu, keys, OP, MEMBERS)
    await admin.send(ocu, admin.change(remove=["TT-POLICE"], add=[keys["DM-CUSTOMS"].signed]))
    url, by = f"{hub.http}/v1/operations/{OP}", keys["DM-CUSTOMS"]
    async with asyncio.timeout(TIMEOUT):
        seq = await ocu.publish(OP, b"situation report")
        # on a shared store (JetStream) the node's head follows the cluster's feed: it
        # reaches what was acknowledged a moment after the ack
        while (await get_json(http, url, by=by))[1].get("head", 0) < seq:
            await asyncio.sleep(0.01)
    status, body = await get_json(http, url, by=by)
    assert status == 200
    assert body == {"op": OP, "name": f"Operation {OP}", "admin": "OCU-BB", "epoch": 1,
                    "members": ["DM-CUSTOMS", "JM-CUSTOMS", "OCU-BB"], "head": seq,
                    "subscribers": 0}
    assert seq == 3  # create, change, message
    # the unit removed no longer sees it
    status, _ = await get_json(http, url, by=keys["TT-POLICE"])
    assert status == 404


async def test_operation_unknown_is_404_unknown_operation(hub, keys, http):
    """GET /v1/operations/{op} for an operation the hub lacks is a 404 with unknown_operation."""
    status, body = await get_json(http, f"{hub.http}/v1/operations/OP-NOWHERE",
                                  by=keys["OCU-BB"])
    assert status == 404
    assert body["error"]["code"] == Code.UNKNOWN_OPERATION
    assert "OP-NOWHERE" in body["error"]["message"]


# --- authentication --------------------------------------------------------------------------


def _stale(keys: Keys, url: str) -> dict[str, str]:
    return signed(keys["OCU-BB"], "GET", url, at=int(time.time()) - 3600)


def _other_path(keys: Keys, url: str) -> dict[str, str]:
    return signed(keys["OCU-BB"], "GET", url.replace("/v1/directory", "/v1/operations"))


def _wrong_key(keys: Keys, url: str) -> dict[str, str]:
    header = signed(keys["JM-CUSTOMS"], "GET", url)["Authorization"]
    return {"Authorization": header.replace('unit="JM-CUSTOMS"', 'unit="OCU-BB"')}


def _unknown_unit(keys: Keys, url: str) -> dict[str, str]:
    stranger = keys.authority.enroll(NEWCOMER, now=keys.now - 60)
    return signed(stranger, "GET", url)


def _foreign_credential(keys: Keys, url: str) -> dict[str, str]:
    impostor = Authority.generate().enroll(UnitSpec("OCU-ZZ", "ZZ", "customs", "ocu"),
                                           now=keys.now - 60)
    return signed(impostor, "GET", url, bring=True)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        pytest.param(lambda keys, url: {}, Code.UNAUTHENTICATED, id="unsigned"),
        pytest.param(lambda keys, url: {"Authorization": "Bearer abc"}, Code.BAD_CREDENTIAL,
                     id="other-scheme"),
        pytest.param(lambda keys, url: {"Authorization": 'Opshub-Ed25519 unit="OCU-BB"'},
                     Code.BAD_CREDENTIAL, id="incomplete"),
        pytest.param(_stale, Code.STALE_REQUEST, id="stale"),
        pytest.param(_other_path, Code.BAD_SIGNATURE, id="signed-for-another-path"),
        pytest.param(_wrong_key, Code.BAD_SIGNATURE, id="another-units-key"),
        pytest.param(_unknown_unit, Code.UNKNOWN_UNIT, id="not-enrolled"),
        pytest.param(_foreign_credential, Code.UNKNOWN_AUTHORITY, id="untrusted-authority"),
    ],
)
async def test_an_unauthenticated_request_is_401_naming_why(hub, keys, http, headers, code):
    """A /v1/ request that is not signed, or whose signature, time or credential does not
    verify, is a 401 with a stable code, and reveals nothing of the directory."""
    url = f"{hub.http}/v1/directory"
    status, ctype, raw = await call(http, "GET", url, headers=headers(keys, url))
    assert (status, ctype) == (401, "application/json")
    assert json.loads(raw)["error"]["code"] == code
    assert b"JM-CUSTOMS" not in raw or code == Code.BAD_SIGNATURE  # it names the signer


async def test_a_unit_not_enrolled_authenticates_with_its_credential(hub, keys, http):
    """A unit the hub does not know yet proves who it is by bringing its authority-signed
    credential: it sees its own entry only (it is not enrolled by asking)."""
    newcomer = keys.authority.enroll(NEWCOMER, now=keys.now - 60)
    url = f"{hub.http}/v1/directory"
    status, _, raw = await call(http, "GET", url, headers=signed(newcomer, "GET", url,
                                                                  bring=True))
    assert (status, json.loads(raw)) == (200, {"units": []})


async def test_header_names_are_case_insensitive(hub, keys, http):
    """HTTP header names are case-insensitive (RFC 9110 5.1): a client or proxy that sends
    them in lower case is served the same."""
    newcomer = keys.authority.enroll(NEWCOMER, now=keys.now - 60)
    url = f"{hub.http}/v1/directory"
    headers = {name.lower(): value
               for name, value in signed(newcomer, "GET", url, bring=True).items()}
    status, _, raw = await call(http, "GET", url, headers=headers)
    assert (status, json.loads(raw)) == (200, {"units": []})


async def test_a_tampered_body_does_not_verify(hub, keys, http):
    """The signature covers the body: the same headers over another body are a 401."""
    newcomer = keys.authority.enroll(NEWCOMER, now=keys.now - 60)
    url = f"{hub.http}/v1/directory"
    body = json.dumps(encode_credential(newcomer.signed)).encode()
    headers = signed(keys["OCU-BB"], "POST", url, body)
    headers["Content-Type"] = "application/json"
    status, _, raw = await call(http, "POST", url, data=body.replace(b"{", b"{ "),
                                headers=headers)
    assert (status, json.loads(raw)["error"]["code"]) == (401, Code.BAD_SIGNATURE)
    await assert_refused(hub, newcomer, Code.UNKNOWN_UNIT)


async def test_the_openapi_document_needs_no_signature(hub, http):
    status, body = await get_json(http, f"{hub.http}/v1/openapi.json")
    assert status == 200
    assert body["openapi"] == "3.1.0"


# --- directory -----------------------------------------------------------------------------------


def _private_forms(identity: UnitIdentity) -> list[bytes]:
    raw = identity.key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return [raw, raw.hex().encode(), base64.b64encode(raw)]


async def test_a_registrar_sees_every_fingerprint_without_private_material(hub, keys, http):
    """GET /v1/directory by a registrar lists every unit with its fingerprint and nothing
    private."""
    status, ctype, raw = await call(http, "GET", f"{hub.http}/v1/directory", by=keys["OCU-BB"])
    assert (status, ctype) == (200, "application/json")
    entries = {e["unit"]: e for e in json.loads(raw)["units"]}
    assert sorted(entries) == sorted(keys.units)
    for unit, ident in keys.units.items():
        entry = entries[unit]
        assert entry["fingerprint"] == ident.fingerprint
        assert entry["identity_key"] == ident.credential.identity_key.hex()
        assert (entry["role"], entry["country"]) == (ident.credential.role,
                                                      ident.credential.country)
        assert base64.b64decode(entry["credential"]) == ident.signed.body
        assert not {"private_key", "key", "secret"} & set(entry)
        for secret in _private_forms(ident):
            assert secret not in raw
    auth_private = keys.authority.key.private_bytes(Encoding.Raw, PrivateFormat.Raw,
                                                    NoEncryption())
    assert auth_private.hex().encode() not in raw
    assert base64.b64encode(auth_private) not in raw


async def test_a_unit_sees_itself_and_its_operations_units(hub, agents, keys, http):
    """A member sees its own entry and those of its operations' units; a unit in no
    operation sees itself; an entry outside that is a 404, as if it were not there."""
    ocu = await agents("OCU-BB")
    await create_operation(ocu, keys, OP, MEMBERS)
    for unit, visible in [("JM-CUSTOMS", ["JM-CUSTOMS", "OCU-BB", "TT-POLICE"]),
                          ("DM-CUSTOMS", ["DM-CUSTOMS"])]:
        status, body = await get_json(http, f"{hub.http}/v1/directory", by=keys[unit])
        assert status == 200
        assert [e["unit"] for e in body["units"]] == visible, unit
    status, entry = await get_json(http, f"{hub.http}/v1/directory/TT-POLICE",
                                   by=keys["JM-CUSTOMS"])
    assert (status, entry) == (200, keys["TT-POLICE"].signed.to_json())
    status, body = await get_json(http, f"{hub.http}/v1/directory/TT-POLICE",
                                  by=keys["DM-CUSTOMS"])
    assert (status, body["error"]["code"]) == (404, Code.UNKNOWN_UNIT)


async def test_directory_unit_returns_one_entry(hub, keys, http):
    """GET /v1/directory/{unit} returns that unit's public entry, a 404 for an unknown one."""
    status, entry = await get_json(http, f"{hub.http}/v1/directory/TT-POLICE", by=keys["OCU-BB"])
    assert status == 200
    assert entry == keys["TT-POLICE"].signed.to_json()
    status, body = await get_json(http, f"{hub.http}/v1/directory/GY-POLICE", by=keys["OCU-BB"])
    assert status == 404
    assert body["error"]["code"] == Code.UNKNOWN_UNIT


async def test_a_registrar_enrolls_a_valid_credential(hub, keys, http):
    """POST /v1/directory by a registrar with an authority-signed credential is a 201;
    then the unit connects."""
    newcomer = keys.authority.enroll(NEWCOMER, now=keys.now - 60)
    await assert_refused(hub, newcomer, Code.UNKNOWN_UNIT)
    status, entry = await post_json(http, f"{hub.http}/v1/directory", by=keys["OCU-BB"],
                                    json_body=encode_credential(newcomer.signed))
    assert status == 201
    assert (entry["unit"], entry["fingerprint"]) == ("GY-POLICE", newcomer.fingerprint)
    _, listed = await get_json(http, f"{hub.http}/v1/directory/GY-POLICE", by=keys["OCU-BB"])
    assert listed == entry
    await assert_connects(hub, newcomer)


@pytest.mark.parametrize("unit", ["JM-CUSTOMS", "INTERPOL-LO", None])
async def test_only_a_registrar_enrolls(hub, keys, http, unit):
    """POST /v1/directory by a unit that is not a registrar is a 403 forbidden (unsigned:
    401), and the credential is not enrolled."""
    newcomer = keys.authority.enroll(NEWCOMER, now=keys.now - 60)
    status, body = await post_json(http, f"{hub.http}/v1/directory",
                                   by=keys[unit] if unit else None,
                                   json_body=encode_credential(newcomer.signed))
    assert (status, body["error"]["code"]) == (
        (403, Code.FORBIDDEN) if unit else (401, Code.UNAUTHENTICATED))
    await assert_refused(hub, newcomer, Code.UNKNOWN_UNIT)


async def test_the_configuration_names_the_registrars(keys, hub_config, http):
    """registrar_units and registrar_roles decide who enrolls: with no registrar role, an
    ocu unit is refused; a unit named in registrar_units is allowed."""
    config = hub_config(registrar_roles=(), registrar_units=("JM-CUSTOMS",))
    async with RunningHub(config) as hub:
        hub.hub.preload([u.signed for u in keys.units.values()])
        newcomer = keys.authority.enroll(NEWCOMER, now=keys.now - 60)
        body = encode_credential(newcomer.signed)
        status, reply = await post_json(http, f"{hub.http}/v1/directory", by=keys["OCU-BB"],
                                        json_body=body)
        assert (status, reply["error"]["code"]) == (403, Code.FORBIDDEN)
        status, _ = await post_json(http, f"{hub.http}/v1/directory", by=keys["JM-CUSTOMS"],
                                    json_body=body)
        assert status == 201
        await assert_connects(hub, newcomer)


def _tampered(keys: Keys, newcomer: UnitIdentity) -> SignedCredential:
    # the same signature over a credential that now claims role 'ocu'
    escalated = replace(newcomer.credential, role="ocu")
    return SignedCredential(escalated.to_bytes(), newcomer.signed.signature)


def _foreign(keys: Keys, newcomer: UnitIdentity) -> SignedCredential:
    return Authority.generate().issue(NEWCOMER, newcomer.credential.identity_key,
                                      now=keys.now - 60)


def _expired(keys: Keys, newcomer: UnitIdentity) -> SignedCredential:
    return keys.authority.issue(NEWCOMER, newcomer.credential.identity_key,
                                now=keys.now - 7200, validity=3600)


def _not_a_credential(keys: Keys, newcomer: UnitIdentity) -> SignedCredential:
    return SignedCredential(b"\x93\x01\x02\x03", newcomer.signed.signature)


@pytest.mark.parametrize(
    ("make", "code"),
    [
        pytest.param(_tampered, Code.BAD_CREDENTIAL, id="tampered"),
        pytest.param(_not_a_credential, Code.BAD_CREDENTIAL, id="not-a-credential"),
        pytest.param(_foreign, Code.UNKNOWN_AUTHORITY, id="untrusted-authority"),
        pytest.param(_expired, Code.EXPIRED_CREDENTIAL, id="expired"),
    ],
)
async def test_directory_post_refuses_unverifiable_credential(hub, keys, http, make, code):
    """POST /v1/directory with a credential that does not verify is a 400 naming why."""
    newcomer = keys.authority.enroll(NEWCOMER, now=keys.now - 60)
    status, body = await post_json(http, f"{hub.http}/v1/directory", by=keys["OCU-BB"],
                                   json_body=encode_credential(make(keys, newcomer)))
    assert status == 400
    assert body["error"]["code"] == code
    status, _ = await get_json(http, f"{hub.http}/v1/directory/GY-POLICE", by=keys["OCU-BB"])
    assert status == 404
    await assert_refused(hub, newcomer, Code.UNKNOWN_UNIT)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="garbage"),
        pytest.param(b"\xff\xfe\x00", id="not-utf8"),
        pytest.param(b"[]", id="array"),
        pytest.param(b"null", id="null"),
        pytest.param(b'{"credential": "AAAA"}', id="missing-signature"),
        pytest.param(b'{"credential": "not base64!", "signature": "AAAA"}', id="bad-base64"),
        pytest.param(b'{"credential": 7, "signature": "AAAA"}', id="number"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-100000-deep"),
        pytest.param(b'{"a":' * 50_000 + b"1" + b"}" * 50_000, id="nested-objects"),
    ],
)
async def test_directory_post_refuses_malformed_body(hub, keys, http, body):
    """POST /v1/directory with a body that is not the expected JSON is a 400 malformed_frame
    (deeply nested JSON too: it was a 500), and the hub goes on serving."""
    status, reply = await post_json(http, f"{hub.http}/v1/directory", by=keys["OCU-BB"],
                                    data=body)
    assert status == 400
    assert reply["error"]["code"] == Code.MALFORMED
    status, health = await get_json(http, f"{hub.metrics_http}/healthz")
    assert (status, health["units"]) == (200, len(UNITS))


async def test_directory_post_refuses_older_credential_than_enrolled(hub, keys, http):
    """POST /v1/directory with a credential older than the enrolled one is refused."""
    current = keys["JM-CUSTOMS"]
    rotated_out = keys.authority.enroll(UnitSpec("JM-CUSTOMS", "JM", "customs"),
                                        now=keys.now - 3600)
    assert rotated_out.credential.issued_at < current.credential.issued_at
    status, body = await post_json(http, f"{hub.http}/v1/directory", by=keys["OCU-BB"],
                                   json_body=encode_credential(rotated_out.signed))
    assert (status, body["error"]["code"]) == (400, Code.BAD_CREDENTIAL)
    assert "superseded" in body["error"]["message"]
    _, entry = await get_json(http, f"{hub.http}/v1/directory/JM-CUSTOMS", by=keys["OCU-BB"])
    assert entry["fingerprint"] == current.fingerprint
    await assert_refused(hub, rotated_out, Code.BAD_CREDENTIAL)
    await assert_connects(hub, current)


# --- metrics -------------------------------------------------------------------------------------


async def test_metrics_is_prometheus_text(hub, agents, http):
    """GET /metrics is typed Prometheus text with the connection, traffic and queue families."""
    await agents("JM-CUSTOMS")
    samples = await scrape(http, hub)
    for name in ("opshub_connections", "opshub_messages_in_total", "opshub_deliveries_total",
                 "opshub_outbound_queue_bytes", "opshub_slow_consumers_total",
                 "opshub_frames_in_total", "opshub_bytes_in_total", "opshub_bytes_out_total"):
        assert name in samples, name
    assert samples["opshub_connections"] == 1
    assert samples["opshub_outbound_queue_bytes"] >= 0


async def test_metrics_counters_move_after_traffic(hub, agents, keys, http):
    """Publishing and delivering moves the message, delivery, frame and byte counters;
    rejected HTTP requests are counted by status."""
    before = await scrape(http, hub)
    payloads = [f"report {i}".encode() for i in range(10)]
    await operation_with_traffic(agents, keys, payloads)
    outsider = await agents("DM-CUSTOMS")
    with pytest.raises(RequestError, match="not a member"):
        await outsider.subscribe(OP)
    for _ in range(3):
        await call(http, "GET", f"{hub.http}/v1/directory")
    after = await scrape(http, hub)
    # the creating commit is a log entry too; two readers got each message
    assert after["opshub_messages_in_total"] - before["opshub_messages_in_total"] == 11
    assert after["opshub_deliveries_total"] - before["opshub_deliveries_total"] == 20
    for name in ("opshub_frames_in_total", "opshub_bytes_in_total", "opshub_bytes_out_total",
                 "opshub_connections_total"):
        assert after[name] > before[name], name
    assert after["opshub_connections"] == 4  # OCU-BB, two readers, the outsider
    assert after['opshub_errors_total{code="not_member"}'] == 1
    assert after['opshub_rejected_total{reason="http_401"}'] == 3


async def test_api_never_returns_a_message_payload(hub, agents, keys, http):
    """No API response carries a published payload or header, in any common encoding."""
    marker = f"PAYLOAD-{uuid.uuid4().hex}".encode()
    await operation_with_traffic(agents, keys, [marker + b" seizure 40 kg"])
    async with asyncio.timeout(TIMEOUT):
        await (await agents("JM-CUSTOMS")).publish(OP, b"x", header=marker)
    forms = [marker, marker.hex().encode(), base64.b64encode(marker)[:24]]
    urls = [f"{hub.metrics_http}/healthz", f"{hub.metrics_http}/metrics"] + [
        f"{hub.http}{path}" for path in (
            "/v1/operations", f"/v1/operations/{OP}", "/v1/directory", "/v1/directory/OCU-BB",
            "/v1/directory/JM-CUSTOMS", "/v1/operations/OP-NOWHERE",
            "/v1/directory/GY-POLICE")]
    for url in urls:
        for by in (keys["OCU-BB"], keys["JM-CUSTOMS"]):
            status, _, body = await call(http, "GET", url, by=by if "/v1/" in url else None)
            assert status in (200, 404), url
            for form in forms:
                assert form not in body, url
