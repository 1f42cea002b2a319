"""ICE servers (STUN/TURN) for the sidecar peer and its clients."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from server.config import ProbeSettings

if TYPE_CHECKING:
    from aiortc import RTCIceServer


def ice_config(settings: ProbeSettings) -> list[dict[str, Any]]:
    """The configured servers as W3C RTCIceServer dictionaries (for browsers)."""
    if not settings.ice_servers.strip():
        return []
    try:
        servers = orjson.loads(settings.ice_servers)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"BONDLINE_PROBE_ICE_SERVERS is not JSON: {e}") from None
    if not isinstance(servers, list) or not all(isinstance(s, dict) and "urls" in s for s in servers):
        raise ValueError("BONDLINE_PROBE_ICE_SERVERS must be a JSON list of objects with 'urls'")
    return servers


def ice_servers(settings: ProbeSettings) -> list[RTCIceServer]:
    # imported when a probe connects: a server that never hosts one does without aiortc
    from aiortc import RTCIceServer

    return [RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in ice_config(settings)]
