"""The hub's key package directory over real WebSockets: upload checks, claims, limits."""

from __future__ import annotations

import os

import pytest

from client.e2ee.suite import CLASSIC, HYBRID, KeyPackageKeys
from protocol.errors import Code, RequestError
from protocol.keypackages import KeyPackage, SignedKeyPackage
from tests.conftest import STORES

pytestmark = pytest.mark.parametrize("store", STORES, indirect=True)


def _keys(keys, unit: str, suite=CLASSIC) -> KeyPackageKeys:
    return KeyPackageKeys(unit, keys[unit].key, suite, os.urandom)


async def test_keypackages_claim_hands_out_one_time_ones_then_the_last_resort(agents, keys):
    jm, ocu = await agents("JM-CUSTOMS"), await agents("OCU-BB")
    mine = _keys(keys, "JM-CUSTOMS", HYBRID)
    published = mine.generate(2, now=keys.now, last_resort=True)
    assert await jm.put_key_packages(published) == 2
    got = [(await ocu.claim_key_packages(["JM-CUSTOMS"]))[0]["JM-CUSTOMS"] for _ in range(4)]
    assert got == [published[0], published[1], published[2], published[2]]
    pkg = SignedKeyPackage.from_bytes(got[0]).verify(keys["JM-CUSTOMS"].credential.identity_key,
                                                     "JM-CUSTOMS")
    assert pkg.kem == "MLKEM768_X25519"
    assert len(pkg.public_key) == 1216
    assert await ocu.claim_key_packages(["TT-POLICE", "JM-CUSTOMS"]) == (
        {"JM-CUSTOMS": published[2]}, ["TT-POLICE"])


async def test_keypackages_replace_drops_what_the_hub_held(agents, keys):
    jm, ocu = await agents("JM-CUSTOMS"), await agents("OCU-BB")
    mine = _keys(keys, "JM-CUSTOMS")
    await jm.put_key_packages(mine.generate(3, now=keys.now))
    fresh = mine.generate(1, now=keys.now)
    assert await jm.put_key_packages(fresh, replace=True) == 1
    assert (await ocu.claim_key_packages(["JM-CUSTOMS"]))[0] == {"JM-CUSTOMS": fresh[0]}


async def test_keypackages_bad_uploads_are_refused_by_name(agents, keys):
    """Another unit's package, a package signed by the wrong key, and garbage: each is
    refused with its code, nothing is stored, and the connection keeps serving."""
    jm = await agents("JM-CUSTOMS")
    theirs = _keys(keys, "TT-POLICE").generate(1, now=keys.now)[0]
    pkg = KeyPackage(unit="JM-CUSTOMS", kem="X25519", public_key=bytes(32), created_at=1)
    wrong_key = SignedKeyPackage.sign(keys["TT-POLICE"].key, pkg).to_bytes()
    for bad, code in ((theirs, Code.BAD_KEY_PACKAGE), (wrong_key, Code.BAD_SIGNATURE),
                      (b"\x93garbage", Code.BAD_KEY_PACKAGE)):
        with pytest.raises(RequestError) as exc:
            await jm.put_key_packages([bad])
        assert exc.value.code == code
        assert "packages[0]" in exc.value.message
    assert await jm.put_key_packages(_keys(keys, "JM-CUSTOMS").generate(1, now=keys.now)) == 1


async def test_keypackages_only_ocu_units_may_claim(agents, keys):
    jm, tt = await agents("JM-CUSTOMS"), await agents("TT-POLICE")
    await tt.put_key_packages(_keys(keys, "TT-POLICE").generate(1, now=keys.now))
    with pytest.raises(RequestError) as exc:
        await jm.claim_key_packages(["TT-POLICE"])
    assert exc.value.code == Code.NOT_ADMIN


async def test_keypackages_package_with_a_non_string_kem_is_refused(agents, keys):
    """A kem field of the wrong type is a bad_key_package, not a crash of the request."""
    import msgpack

    jm = await agents("JM-CUSTOMS")
    body = msgpack.packb(["JM-CUSTOMS", ["X25519"], bytes(32), 1, False])
    raw = SignedKeyPackage(body, keys["JM-CUSTOMS"].key.sign(b"x")).to_bytes()
    with pytest.raises(RequestError) as exc:
        await jm.put_key_packages([raw])
    assert exc.value.code == Code.BAD_KEY_PACKAGE
    assert await jm.put_key_packages(_keys(keys, "JM-CUSTOMS").generate(1, now=keys.now)) == 1
