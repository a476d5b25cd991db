"""The raw output of a capture (``raw_output``): perf's text as printed, and its side files."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import IO, Final

from perfnet.kallsyms import Kallsyms, save_kallsyms
from perfnet.reader import ANSI_ESCAPE
from perfnet.topology import Topology

_ANSI: Final = re.compile(ANSI_ESCAPE.encode())


class RawOutput:
    """perf's output, kept in a file as printed (without colour) while it is parsed.

    A write error (a full disk, EIO) never stops the capture: writing stops, and on
    :meth:`close` the file becomes ``<path>.incomplete`` (or is removed if nothing was written),
    and :attr:`problem` says so for ``Trace.partial``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problem: str | None = None  # why the file is incomplete, after close()
        self._file: IO[bytes] | None = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._error: OSError | None = None

    def write(self, line: bytes) -> None:
        """Keep one line of perf's output."""
        if self._file is None:
            return
        try:
            self._file.write(_ANSI.sub(b"", line) + b"\n")
        except OSError as exc:  # a full disk (ENOSPC), EIO: the capture goes on in memory
            self.fail(exc)

    def fail(self, error: OSError) -> None:
        """The file cannot be written whole: stop writing it."""
        self._error = error
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()

    def close(self) -> None:
        """Flush and close; a file that could not be written whole is renamed ``*.incomplete``."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:  # the last buffered write
                self.fail(exc)
            self._file = None
        if self._error is None or self.problem is not None:
            return
        incomplete = Path(f"{self.path}.incomplete")
        try:
            if self.path.stat().st_size == 0:
                raise OSError("nothing was written")
            self.path.replace(incomplete)
            where = f"what was written is in {incomplete}"
        except OSError:
            with contextlib.suppress(OSError):
                self.path.unlink()
            where = "it was removed"
        self.problem = f"raw output {self.path} could not be written ({self._error.strerror or self._error}); {where}"

    def discard(self) -> None:
        """perf never ran: the file goes."""
        self.fail(OSError("perf did not start"))
        with contextlib.suppress(OSError):
            self.path.unlink()
        self.problem = ""

    def save_side_files(self, formats: dict[str, str], symbols: Kallsyms | None, topology: Topology | None) -> None:
        """``<raw>.formats/``, ``<raw>.kallsyms.gz`` and ``<raw>.topology.json``, best effort
        (none beside an incomplete file)."""
        if self._error is not None:
            return
        for event, text in formats.items():
            sub, _, name = event.partition(":")
            dest = Path(f"{self.path}.formats", sub, name, "format")
            with contextlib.suppress(OSError):
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(text, encoding="utf-8")
        if symbols is not None:  # read once, when tracing began
            with contextlib.suppress(OSError):
                save_kallsyms(symbols, Path(f"{self.path}.kallsyms.gz"))
        if topology is not None:
            with contextlib.suppress(Exception):
                topology.save(f"{self.path}.topology.json")
