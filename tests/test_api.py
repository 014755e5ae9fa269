"""End-to-end tests of the hub's JSON/Prometheus HTTP API against a real hub on 127.0.0.1.

The API is metadata only: it describes operations, the directory and counters, and
must never return a message payload or anything private.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
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


async def call(http: aiohttp.ClientSession, method: str, url: str,
               **kw: Any) -> tuple[int, str, bytes]:
    """One bounded request: status, content type and raw body."""
    async with asyncio.timeout(TIMEOUT), http.request(method, url, **kw) as resp:
        return resp.status, resp.content_type, await resp.read()


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    status, ctype, body = await call(http, "GET", url)
    assert ctype == "application/json", body
    return status, json.loads(body)


async def post_json(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any]:
    status, ctype, body = await call(http, "POST", url, **kw)
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
    status, ctype, body = await call(http, "GET", f"{hub.http}/metrics")
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


async def test_healthz_reports_hub_status(hub, agents, keys, http):
    """GET /healthz names the hub and protocol and counts operations, connections, units."""
    ocu = await agents("OCU-BB")
    await create_operation(ocu, keys, OP, MEMBERS)
    status, body = await get_json(http, f"{hub.http}/healthz")
    assert status == 200
    assert body == {"status": "ok", "hub": "opshub", "protocol": PROTOCOL_VERSION,
                    "operations": 1, "connections": 1, "units": len(UNITS)}


async def test_operations_lists_every_operation(hub, agents, keys, http):
    """GET /v1/operations lists each operation's name, admin, epoch, members, head, subscribers."""
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
    async with asyncio.timeout(TIMEOUT):  # on JetStream the heads follow the feed
        while (await get_json(http, f"{hub.http}/v1/operations"))[1] != expected:
            await asyncio.sleep(0.01)
    status, body = await get_json(http, f"{hub.http}/v1/operations")
    assert status == 200
    assert body == expected


async def test_operation_follows_membership_and_log(hub, agents, keys, http):
    """GET /v1/operations/{op} shows the epoch, members and head after a change and a publish."""
    ocu = await agents("OCU-BB")
    admin = await create_operation(ocu, keys, OP, MEMBERS)
    await admin.send(ocu, admin.change(remove=["TT-POLICE"], add=[keys["DM-CUSTOMS"].signed]))
    async with asyncio.timeout(TIMEOUT):
        seq = await ocu.publish(OP, b"situation report")
        # on a shared store (JetStream) the node's head follows the cluster's feed: it
        # reaches what was acknowledged a moment after the ack
        while (await get_json(http, f"{hub.http}/v1/operations/{OP}"))[1]["head"] < seq:
            await asyncio.sleep(0.01)
    status, body = await get_json(http, f"{hub.http}/v1/operations/{OP}")
    assert status == 200
    assert body == {"op": OP, "name": f"Operation {OP}", "admin": "OCU-BB", "epoch": 1,
                    "members": ["DM-CUSTOMS", "JM-CUSTOMS", "OCU-BB"], "head": seq,
                    "subscribers": 0}
    assert seq == 3  # create, change, message


async def test_operation_unknown_is_404_unknown_operation(hub, http):
    """GET /v1/operations/{op} for an operation the hub lacks is a 404 with unknown_operation."""
    status, body = await get_json(http, f"{hub.http}/v1/operations/OP-NOWHERE")
    assert status == 404
    assert body["error"]["code"] == Code.UNKNOWN_OPERATION
    assert "OP-NOWHERE" in body["error"]["message"]


# --- directory -----------------------------------------------------------------------------------


def _private_forms(identity: UnitIdentity) -> list[bytes]:
    raw = identity.key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return [raw, raw.hex().encode(), base64.b64encode(raw)]


async def test_directory_lists_fingerprints_without_private_material(hub, keys, http):
    """GET /v1/directory lists every unit with its fingerprint and nothing private."""
    status, ctype, raw = await call(http, "GET", f"{hub.http}/v1/directory")
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


async def test_directory_unit_returns_one_entry(hub, keys, http):
    """GET /v1/directory/{unit} returns that unit's public entry, a 404 for an unknown one."""
    status, entry = await get_json(http, f"{hub.http}/v1/directory/TT-POLICE")
    assert status == 200
    assert entry == keys["TT-POLICE"].signed.to_json()
    status, body = await get_json(http, f"{hub.http}/v1/directory/GY-POLICE")
    assert status == 404
    assert body["error"]["code"] == Code.UNKNOWN_UNIT


async def test_directory_post_enrolls_valid_credential(hub, keys, http):
    """POST /v1/directory with an authority-signed credential is a 201; then the unit connects."""
    newcomer = keys.authority.enroll(NEWCOMER, now=keys.now - 60)
    await assert_refused(hub, newcomer, Code.UNKNOWN_UNIT)
    status, entry = await post_json(http, f"{hub.http}/v1/directory",
                                    json=encode_credential(newcomer.signed))
    assert status == 201
    assert (entry["unit"], entry["fingerprint"]) == ("GY-POLICE", newcomer.fingerprint)
    _, listed = await get_json(http, f"{hub.http}/v1/directory/GY-POLICE")
    assert listed == entry
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
    status, body = await post_json(http, f"{hub.http}/v1/directory",
                                   json=encode_credential(make(keys, newcomer)))
    assert status == 400
    assert body["error"]["code"] == code
    status, _ = await get_json(http, f"{hub.http}/v1/directory/GY-POLICE")
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
    ],
)
async def test_directory_post_refuses_malformed_body(hub, http, body):
    """POST /v1/directory with a body that is not the expected JSON is a 400 malformed_frame."""
    status, reply = await post_json(http, f"{hub.http}/v1/directory", data=body,
                                    headers={"Content-Type": "application/json"})
    assert status == 400
    assert reply["error"]["code"] == Code.MALFORMED
    status, health = await get_json(http, f"{hub.http}/healthz")
    assert (status, health["units"]) == (200, len(UNITS))


async def test_directory_post_refuses_older_credential_than_enrolled(hub, keys, http):
    """POST /v1/directory with a credential older than the enrolled one is refused."""
    current = keys["JM-CUSTOMS"]
    rotated_out = keys.authority.enroll(UnitSpec("JM-CUSTOMS", "JM", "customs"),
                                        now=keys.now - 3600)
    assert rotated_out.credential.issued_at < current.credential.issued_at
    status, body = await post_json(http, f"{hub.http}/v1/directory",
                                   json=encode_credential(rotated_out.signed))
    assert (status, body["error"]["code"]) == (400, Code.BAD_CREDENTIAL)
    assert "superseded" in body["error"]["message"]
    _, entry = await get_json(http, f"{hub.http}/v1/directory/JM-CUSTOMS")
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
    """Publishing and delivering moves the message, delivery, frame and byte counters."""
    before = await scrape(http, hub)
    payloads = [f"report {i}".encode() for i in range(10)]
    await operation_with_traffic(agents, keys, payloads)
    outsider = await agents("DM-CUSTOMS")
    with pytest.raises(RequestError, match="not a member"):
        await outsider.subscribe(OP)
    after = await scrape(http, hub)
    # the creating commit is a log entry too; two readers got each message
    assert after["opshub_messages_in_total"] - before["opshub_messages_in_total"] == 11
    assert after["opshub_deliveries_total"] - before["opshub_deliveries_total"] == 20
    for name in ("opshub_frames_in_total", "opshub_bytes_in_total", "opshub_bytes_out_total",
                 "opshub_connections_total"):
        assert after[name] > before[name], name
    assert after["opshub_connections"] == 4  # OCU-BB, two readers, the outsider
    assert after['opshub_errors_total{code="not_member"}'] == 1


async def test_api_never_returns_a_message_payload(hub, agents, keys, http):
    """No API response carries a published payload or header, in any common encoding."""
    marker = f"PAYLOAD-{uuid.uuid4().hex}".encode()
    await operation_with_traffic(agents, keys, [marker + b" seizure 40 kg"])
    async with asyncio.timeout(TIMEOUT):
        await (await agents("JM-CUSTOMS")).publish(OP, b"x", header=marker)
    forms = [marker, marker.hex().encode(), base64.b64encode(marker)[:24]]
    urls = ["/healthz", "/v1/operations", f"/v1/operations/{OP}", "/v1/directory",
            "/v1/directory/OCU-BB", "/v1/directory/JM-CUSTOMS", "/metrics",
            "/v1/operations/OP-NOWHERE", "/v1/directory/GY-POLICE"]
    for url in urls:
        status, _, body = await call(http, "GET", f"{hub.http}{url}")
        assert status in (200, 404), url
        for form in forms:
            assert form not in body, url
