"""What a dump must hold before it is imported, and whose connections it holds.

- Completeness: a connection whose log says it carried media must have
  stats; every stats object a poll refers to (a stream's transport, codec
  and local stream, a transport's selected pair, a pair's candidates) must
  be in that poll. A file with either missing was cut or edited.
- One participant: a browser's dump holds every connection of that
  browser. Two connections that are each other's far end (one receives the
  SSRCs the other sends, or one's DTLS certificate is the other's remote
  certificate) are two participants of one call; connections of different
  pages (another renderer or URL) are taken as different participants too.
  Those imports are refused with a listing of the connections, so the
  operator picks one participant's with ``--pc``.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.importers.model import REFERENCES, DumpError, Timeline, clock


def check_complete(name: str, timelines: list[Timeline]) -> None:
    for tl in timelines:
        if not tl.polls:
            if tl.carried_media:
                raise DumpError(
                    f"{name}: connection {tl.key} ({tl.url or 'no URL'}) carried media according to its log "
                    f"(from {clock(tl.log_first_ms)}), but the dump holds no stats for it: the file was cut or "
                    "edited; import the file as downloaded")
            continue
        for t, report in tl.polls:
            for sid, obj in report.items():
                for ref in REFERENCES:
                    target = obj.get(ref)
                    if isinstance(target, str) and target and target not in report:
                        raise DumpError(
                            f"{name}: connection {tl.key}: stats object {sid} refers to {ref} {target!r}, which the "
                            f"poll at {clock(t)} does not hold: the dump's stats are incomplete (cut or edited)")


@dataclass
class ConnectionInfo:
    key: str
    url: str | None
    first_ms: float | None
    last_ms: float | None
    streams: list[str]

    def line(self) -> str:
        streams = ", ".join(self.streams) or "no media streams"
        return (f"  --pc {self.key}: {self.url or 'URL not recorded'}, {clock(self.first_ms)} to "
                f"{clock(self.last_ms)}, {streams}")


def describe(tl: Timeline) -> ConnectionInfo:
    seen: dict[tuple[str, str], set[int]] = {}
    for _, report in tl.polls:
        for obj in report.values():
            if obj.get("type") in ("inbound-rtp", "outbound-rtp"):
                kind = str(obj.get("kind") or obj.get("mediaType") or "?")
                direction = "receiving" if obj["type"] == "inbound-rtp" else "sending"
                ssrc = obj.get("ssrc")
                seen.setdefault((direction, kind), set()).update([int(ssrc)] if isinstance(ssrc, int | float) else [])
    streams = [f"{d} {k}" + (f" (SSRC {', '.join(str(s) for s in sorted(ss))})" if ss else "")
               for (d, k), ss in sorted(seen.items())]
    first = tl.polls[0][0] if tl.polls else tl.log_first_ms
    last = tl.polls[-1][0] if tl.polls else tl.log_last_ms
    return ConnectionInfo(tl.key, tl.url, first, last, streams)


def check_one_participant(name: str, timelines: list[Timeline]) -> None:
    pairs = [(a, b) for i, a in enumerate(timelines) for b in timelines[i + 1:] if _apart(a, b)]
    if not pairs:
        return
    why = "; ".join(f"{a.key} and {b.key} {_apart(a, b)}" for a, b in pairs[:4])
    listing = "\n".join(describe(tl).line() for tl in timelines)
    raise DumpError(
        f"{name} holds connections of more than one participant ({why}), and a session's participant is one "
        f"side of the call. Pick that participant's connections with --pc (repeatable):\n{listing}\n")


def _apart(a: Timeline, b: Timeline) -> str:
    """Why two connections are not one participant's ('' when they may be)."""
    if _ssrcs(a, "outbound-rtp") & _ssrcs(b, "inbound-rtp") or _ssrcs(b, "outbound-rtp") & _ssrcs(a, "inbound-rtp"):
        return "are the two ends of one call (one receives the streams the other sends)"
    fa, fb = _certs(a), _certs(b)
    if (fa[0] and fa[0] == fb[1]) or (fb[0] and fb[0] == fa[1]):
        return "are the two ends of one call (each other's DTLS certificate)"
    ra, rb = a.key.split("-")[0], b.key.split("-")[0]
    if ra != rb or (a.url and b.url and a.url != b.url):
        return "come from different pages"
    return ""


def _ssrcs(tl: Timeline, kind: str) -> set[int]:
    out: set[int] = set()
    for _, report in tl.polls:
        for obj in report.values():
            if obj.get("type") == kind and isinstance(obj.get("ssrc"), int | float):
                out.add(int(obj["ssrc"]))
    return out


def _certs(tl: Timeline) -> tuple[str | None, str | None]:
    """(local, remote) DTLS certificate fingerprints of the connection's transport."""
    for _, report in reversed(tl.polls):
        for obj in report.values():
            if obj.get("type") == "transport":
                local = report.get(str(obj.get("localCertificateId")), {}).get("fingerprint")
                remote = report.get(str(obj.get("remoteCertificateId")), {}).get("fingerprint")
                if local or remote:
                    return local, remote
    return None, None

