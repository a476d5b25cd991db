"""The lab itself: reserved, built, kept or torn down (see :mod:`perfnet.lab`)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from types import TracebackType
from typing import Self

from perfnet.host.commands import link_exists
from perfnet.host.netns import netns_names
from perfnet.lab import registry
from perfnet.lab.build import build
from perfnet.lab.plan import OCTET_MAX, OCTET_MIN, STATE_DIR, LabError, LabNames, preferred_octet
from perfnet.lab.workloads import Workloads


class Lab(Workloads):
    """A bridge + veth + namespace topology; use as a context manager.

    ``Lab(router=False)`` builds only bridge, host veth and ctr1.  Addresses
    are final once :meth:`up` returned (the octet is allocated there).
    """

    def __init__(self, tag: str | None = None, *, router: bool = True) -> None:
        if tag is None:
            for _ in range(64):
                names = LabNames.for_tag(secrets.token_hex(2))
                if not registry.tag_in_use(names):
                    break
            else:  # pragma: no cover - astronomically unlikely
                raise LabError("could not find a free random lab tag")
        else:
            names = LabNames.for_tag(tag)
        self.names: LabNames = names
        self.router: bool = router
        self.octet: int = preferred_octet(names.tag)
        self._is_up = False
        self._owns_state = False
        self._servers: list[subprocess.Popen[bytes]] = []
        self._tmpdirs: list[tempfile.TemporaryDirectory[str]] = []

    # --- lifecycle -----------------------------------------------------------
    def __enter__(self) -> Self:
        return self.up()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.down()
        except LabError:
            if exc_type is None:
                raise
            # the body's exception is more important; leftovers are reported by down()
            print(f"perfnet.lab: teardown of lab {self.tag} incomplete", file=sys.stderr)

    def up(self) -> Self:
        if self._is_up:
            return self
        try:
            self._reserve()  # if this raises (tag taken), down() below is a no-op
            build(self)
            self._is_up = True
        except BaseException:
            with contextlib.suppress(LabError):
                self.down()
            raise
        return self

    def keep(self) -> None:
        """Leave the lab up after this process exits (``perfnet lab up``).

        Its owner record is marked kept, so :func:`cleanup_stale` spares it; tear it down
        later with ``Lab.attach(tag).down()`` (``perfnet lab down TAG``).
        """
        if not self._owns_state:
            raise LabError("keep() needs a lab that is up")
        with registry.state_lock():
            state = registry.read_state(self.tag) or {}
            (STATE_DIR / f"{self.tag}.json").write_text(json.dumps({**state, "kept": True}))
        self._owns_state = False  # this process no longer tears it down

    @classmethod
    def attach(cls, tag: str) -> Lab:
        """The lab ``tag`` that another (possibly finished) process built, ready for :meth:`down`.

        Raises:
            LabError: there is no owner record for ``tag``.
        """
        state = registry.read_state(tag)
        if state is None:
            raise LabError(f"no lab {tag!r} (no owner record in {STATE_DIR})")
        lab = cls(tag, router=bool(state.get("router", True)))
        lab.octet = int(state["octet"])
        lab._owns_state = lab._is_up = True
        return lab

    def _reserve(self) -> None:
        with registry.state_lock():
            if registry.tag_in_use(self.names):
                raise LabError(f"lab tag {self.tag!r} is already in use")
            used = registry.octets_in_use()
            span = OCTET_MAX - OCTET_MIN + 1
            start = preferred_octet(self.tag) - OCTET_MIN
            for i in range(span):
                x = OCTET_MIN + (start + i) % span
                if x not in used:
                    break
            else:
                raise LabError(f"no free 10.X.0.0/16 with X in {OCTET_MIN}..{OCTET_MAX}")
            self.octet = x
            state = {
                "tag": self.tag,
                "prefix": self.names.prefix,
                "octet": x,
                "router": self.router,
                "pid": os.getpid(),
                "pid_start": registry.proc_start_time(os.getpid()),
                "netns": list(self.namespaces),
                "links": list(self.names.root_links),
                "created": time.time(),
            }
            (STATE_DIR / f"{self.tag}.json").write_text(json.dumps(state))
            self._owns_state = True

    def leftovers(self) -> list[str]:
        """Objects of this lab that still exist (``"netns:NAME"``/``"link:NAME"``)."""
        present = set(netns_names())
        left = [f"netns:{ns}" for ns in (self.ctr1, self.ctr2) if ns in present]
        left += [f"link:{ln}" for ln in self.names.root_links if link_exists(ln)]
        return left

    def down(self) -> None:
        """Tear everything down; idempotent, fine if objects are already gone.

        Raises :class:`LabError` only if lab objects still exist afterwards.
        """
        with registry.signals_deferred():
            for proc in list(self._servers):
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    self._stop_server(proc)
            for tmp in list(self._tmpdirs):
                with contextlib.suppress(OSError):
                    tmp.cleanup()
            self._tmpdirs.clear()
            if not self._owns_state:
                return  # never reserved (or already torn down): nothing of ours exists
            registry.destroy(self.names)
            self._is_up = False
            left = self.leftovers()
            if self._owns_state and not left:
                with contextlib.suppress(OSError):
                    (STATE_DIR / f"{self.tag}.json").unlink()
                self._owns_state = False
            if left:
                raise LabError(f"lab {self.tag}: could not remove {left}")
