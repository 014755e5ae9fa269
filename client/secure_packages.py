"""KeyPackageSupply: a SecureAgent's one-time key packages on the hub.

It publishes them when the agent starts (with a last-resort one, replacing whatever the
hub held), and tops them up when commits have used half of them or when the agent asks
for keys again. An agent with a state file gets the private halves saved before the
public ones leave (``save``): an admin may seal a secret to a package as soon as the hub
hands it out, and a restarted agent must be able to open it. The private halves are
``KeyPackageKeys``'; the connection and the tasks are the agent's.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from client.connection import AgentConnection, ConnectionClosed
from client.e2ee.suite import KeyPackageKeys
from client.secure_admin import Spawn
from protocol.errors import OpshubError

log = logging.getLogger("opshub.secure")


class KeyPackageSupply:
    def __init__(self, conn: AgentConnection, keys: KeyPackageKeys, *, target: int,
                 clock: Callable[[], float], spawn: Spawn,
                 save: Callable[[], Awaitable[None]]) -> None:
        """``target``: how many one-time packages the hub should hold for this unit;
        ``save`` returns once the agent's state is on disk, if it keeps one."""
        self.conn = conn
        self.keys = keys
        self.target = target
        self.clock = clock
        self._spawn = spawn
        self._save = save
        self._topping_up = False

    async def publish(self) -> None:
        """A new agent's packages: ``target`` one-time ones and a last-resort one. Raises
        RequestError if the hub refuses them."""
        packages = self.keys.generate(self.target, now=int(self.clock()), last_resort=True)
        await self._save()
        # replace: this agent holds no private half of any package published before it
        await self.conn.put_key_packages(packages, replace=True)

    def low(self) -> bool:
        """Half of the packages or more are used up."""
        return len(self.keys) < self.target // 2

    def after_commit(self) -> None:
        """Top up in the background if a commit used up too many."""
        if self.low() and not self._topping_up:
            self._spawn(self._top_up_on_schedule, f"top-up-{self.keys.unit}")

    async def top_up(self, force: bool = False) -> None:
        """Publish packages up to ``target`` (at least one); ``force``: even while another
        top-up is under way. Raises RequestError if the hub refuses them."""
        if self._topping_up and not force:
            return
        self._topping_up = True
        try:
            packages = self.keys.generate(max(1, self.target - len(self.keys)),
                                          now=int(self.clock()))
            await self._save()
            await self.conn.put_key_packages(packages)
        finally:
            self._topping_up = False

    async def _top_up_on_schedule(self) -> None:
        """New key packages after commits used some up. If the hub or the network is why
        it fails, that is logged, and the next commit tries again."""
        try:
            await self.top_up()
        except (OpshubError, TimeoutError, ConnectionClosed) as exc:
            log.warning("%s: publishing key packages failed: %r", self.keys.unit, exc)
