"""The hub's key package directory over real WebSockets: upload checks, claims (who may
claim, and retries), limits."""

from __future__ import annotations

import os

import pytest

from client.e2ee.suite import CLASSIC, HYBRID, KeyPackageKeys
from client.identity import UnitSpec
from protocol.errors import Code, RequestError
from protocol.keypackages import KeyPackage, SignedKeyPackage
from tests.conftest import STORES, Keys, create_operation

pytestmark = pytest.mark.parametrize("store", STORES, indirect=True)

#: An operation no test creates: claims for it follow the rule for a new operation.
NEW_OP = "OP-NOT-YET"


@pytest.fixture
def keys() -> Keys:
    """The shared units and a second OCU unit, OCU-CC, enrolled at the hub too."""
    k = Keys()
    k.units["OCU-CC"] = k.authority.enroll(UnitSpec("OCU-CC", "CC", "customs", "ocu"),
                                           now=k.now - 60)
    return k


def _keys(keys, unit: str, suite=CLASSIC) -> KeyPackageKeys:
    return KeyPackageKeys(unit, keys[unit].key, suite, os.urandom)


async def test_keypackages_claim_hands_out_one_time_ones_then_the_last_resort(agents, keys):
    jm, ocu = await agents("JM-CUSTOMS"), await agents("OCU-BB")
    mine = _keys(keys, "JM-CUSTOMS", HYBRID)
    published = mine.generate(2, now=keys.now, last_resort=True)
    assert await jm.put_key_packages(published) == 2
    got = [(await ocu.claim_key_packages(NEW_OP, ["JM-CUSTOMS"]))[0]["JM-CUSTOMS"]
           for _ in range(4)]
    assert got == [published[0], published[1], published[2], published[2]]
    pkg = SignedKeyPackage.from_bytes(got[0]).verify(keys["JM-CUSTOMS"].credential.identity_key,
                                                     "JM-CUSTOMS")
    assert pkg.kem == "MLKEM768_X25519"
    assert len(pkg.public_key) == 1216
    assert await ocu.claim_key_packages(NEW_OP, ["TT-POLICE", "JM-CUSTOMS"]) == (
        {"JM-CUSTOMS": published[2]}, ["TT-POLICE"])


async def test_keypackages_replace_drops_what_the_hub_held(agents, keys):
    jm, ocu = await agents("JM-CUSTOMS"), await agents("OCU-BB")
    mine = _keys(keys, "JM-CUSTOMS")
    await jm.put_key_packages(mine.generate(3, now=keys.now))
    fresh = mine.generate(1, now=keys.now)
    assert await jm.put_key_packages(fresh, replace=True) == 1
    assert (await ocu.claim_key_packages(NEW_OP, ["JM-CUSTOMS"]))[0] == {
        "JM-CUSTOMS": fresh[0]}


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


async def test_keypackages_only_ocu_units_may_claim_for_a_new_operation(agents, keys):
    """A unit whose role is not 'ocu' cannot claim for an operation it would create."""
    jm, tt = await agents("JM-CUSTOMS"), await agents("TT-POLICE")
    await tt.put_key_packages(_keys(keys, "TT-POLICE").generate(1, now=keys.now))
    with pytest.raises(RequestError) as exc:
        await jm.claim_key_packages(NEW_OP, ["TT-POLICE"])
    assert exc.value.code == Code.NOT_ADMIN


async def test_keypackages_claim_by_an_ocu_unit_that_is_not_the_admin_is_refused(agents, keys):
    """Another OCU unit claiming for an existing operation gets not_admin and takes
    nothing: the admin then gets the member's first package."""
    bb, cc, jm = await agents("OCU-BB"), await agents("OCU-CC"), await agents("JM-CUSTOMS")
    made = _keys(keys, "JM-CUSTOMS").generate(2, now=keys.now)
    await jm.put_key_packages(made)
    await create_operation(bb, keys, "OP-KP", ["JM-CUSTOMS"])
    with pytest.raises(RequestError) as exc:
        await cc.claim_key_packages("OP-KP", ["JM-CUSTOMS"])
    assert exc.value.code == Code.NOT_ADMIN
    assert "'OCU-BB'" in exc.value.message
    assert await bb.claim_key_packages("OP-KP", ["JM-CUSTOMS"]) == ({"JM-CUSTOMS": made[0]}, [])


async def test_keypackages_claim_by_a_member_that_is_not_the_admin_is_refused(agents, keys):
    """A member of an operation cannot claim its fellow members' packages."""
    bb, jm, tt = await agents("OCU-BB"), await agents("JM-CUSTOMS"), await agents("TT-POLICE")
    await tt.put_key_packages(_keys(keys, "TT-POLICE").generate(1, now=keys.now))
    await create_operation(bb, keys, "OP-KP", ["JM-CUSTOMS", "TT-POLICE"])
    with pytest.raises(RequestError) as exc:
        await jm.claim_key_packages("OP-KP", ["TT-POLICE"])
    assert exc.value.code == Code.NOT_ADMIN


async def test_keypackages_admin_claiming_its_own_package_is_refused(agents, keys):
    """The admin is the member no statement seals to: its own package is not handed out."""
    bb = await agents("OCU-BB")
    await bb.put_key_packages(_keys(keys, "OCU-BB").generate(1, now=keys.now))
    await create_operation(bb, keys, "OP-KP", ["JM-CUSTOMS"])
    with pytest.raises(RequestError) as exc:
        await bb.claim_key_packages("OP-KP", ["JM-CUSTOMS", "OCU-BB"])
    assert exc.value.code == Code.BAD_STATEMENT


async def test_keypackages_claim_retried_with_its_cid_gets_the_same_package(agents, keys):
    """A claim repeated with its cid (a retry after a lost reply) gets the same package and
    takes nothing more; the next claim gets the next package."""
    bb, jm = await agents("OCU-BB"), await agents("JM-CUSTOMS")
    made = _keys(keys, "JM-CUSTOMS").generate(3, now=keys.now)
    assert await jm.put_key_packages(made) == 3
    first = await bb.claim_key_packages(NEW_OP, ["JM-CUSTOMS", "TT-POLICE"], cid=41)
    assert first == ({"JM-CUSTOMS": made[0]}, ["TT-POLICE"])
    assert await bb.claim_key_packages(NEW_OP, ["JM-CUSTOMS", "TT-POLICE"], cid=41) == first
    assert await bb.claim_key_packages(NEW_OP, ["JM-CUSTOMS"], cid=42) == (
        {"JM-CUSTOMS": made[1]}, [])
    assert await jm.put_key_packages([]) == 1


async def test_keypackages_claim_retried_after_creating_the_operation_is_the_same(agents, keys):
    """The admin-to-be claims the initial members' packages, creates the operation, and a
    retry of that claim (now as the operation's admin) still gets the first answer."""
    bb, jm = await agents("OCU-BB"), await agents("JM-CUSTOMS")
    made = _keys(keys, "JM-CUSTOMS").generate(2, now=keys.now)
    await jm.put_key_packages(made)
    first = await bb.claim_key_packages("OP-KP", ["JM-CUSTOMS"], cid=7)
    await create_operation(bb, keys, "OP-KP", ["JM-CUSTOMS"])
    assert await bb.claim_key_packages("OP-KP", ["JM-CUSTOMS"], cid=7) == first
    assert await jm.put_key_packages([]) == 1


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
