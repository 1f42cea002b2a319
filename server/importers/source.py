"""Opening a dump file as a bounded stream of bytes.

Dumps arrive plain or gzip-compressed (recognised by the gzip magic bytes,
not the file name). The importers never hold a whole file in memory: they
read it through ``DumpSource``, which counts the bytes after decompression
and refuses the file once they pass the limit (``BONDLINE_IMPORT_MAX_BYTES``,
docs/integrate-browser.md "Importing a dump"), so a small gzip that unpacks
to gigabytes is stopped after the limit, with memory bounded by the parser's
working set, not by the file.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from server.importers.model import DumpError

BOM = b"\xef\xbb\xbf"
CHUNK = 1 << 16


class DumpSource:
    """A readable, size-limited, decompressed view of a dump file.

    ``sha256`` is the digest of the file's bytes as stored (compressed or
    not), complete once the stream has been read to its end."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.name = path.name
        self.max_bytes = max_bytes
        self.read_bytes = 0
        self._digest = hashlib.sha256()
        try:
            self._raw: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as e:
            raise DumpError(f"cannot read {path}: {e.strerror or e}") from None
        head = self._raw.read(2)
        self._raw.seek(0)
        self.compressed = head == b"\x1f\x8b"
        hashing: Any = _Hashing(self._raw, self._digest)
        self._stream: Any = gzip.GzipFile(fileobj=hashing, mode="rb") if self.compressed else hashing
        self._pushback = b""

    # -- the stream ----------------------------------------------------------

    def read(self, n: int = CHUNK) -> bytes:
        if self._pushback:
            out, self._pushback = self._pushback[:n], self._pushback[n:]
            return out
        try:
            data = self._stream.read(n if n > 0 else CHUNK)
        except EOFError:
            raise DumpError(f"{self.name}: the gzip data is truncated (the file ends before the compressed "
                            "stream does: was the download cut short?)") from None
        except (OSError, zlib.error) as e:
            raise DumpError(f"{self.name}: the gzip data is corrupt ({e})") from None
        self.read_bytes += len(data)
        if self.read_bytes > self.max_bytes:
            raise DumpError(
                f"{self.name}: unpacks to more than {self.max_bytes:,} bytes, the import limit "
                "(BONDLINE_IMPORT_MAX_BYTES); a real dump of a long call is far smaller, so this is not one "
                "(or raise the limit)")
        return data

    def unread(self, data: bytes) -> None:
        self._pushback = data + self._pushback

    def start(self) -> bytes:
        """The first bytes of the content, left in the stream; refuses an empty
        file and a byte-order mark with their own messages."""
        first = b""
        while len(first) < 64:
            more = self.read(64)
            if not more:
                break
            first += more
        self.unread(first)
        if not first:
            raise DumpError(f"{self.name}: the file is empty" + (" (an empty gzip stream)" if self.compressed
                                                                else " (0 bytes)"))
        if not first.strip():
            raise DumpError(f"{self.name}: the file holds only white space, no dump")
        if first.startswith(BOM):
            raise DumpError(
                f"{self.name}: starts with a UTF-8 byte-order mark; Chromium never writes one, so the file was "
                "re-saved by another program and may have been changed: import the file as downloaded from "
                "chrome://webrtc-internals")
        return first

    def measure(self) -> int:
        """Read the whole content once, keeping nothing, and return its unpacked size: a file
        over the limit is refused at C speed, before any parsing, whatever it holds."""
        while self.read(1 << 20):
            pass
        return self.read_bytes

    def drain(self) -> None:
        """Read to the end (so a trailing truncation or the size limit is seen)."""
        while self.read(CHUNK):
            pass

    def sha256(self) -> str:
        return self._digest.hexdigest()

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._raw.close()

    def __enter__(self) -> DumpSource:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class _Hashing:
    """A raw file that feeds what is read from it into a digest."""

    def __init__(self, raw: BinaryIO, digest: Any) -> None:
        self._raw = raw
        self._digest = digest

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._digest.update(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        pass
