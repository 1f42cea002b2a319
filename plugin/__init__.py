"""What runs inside or beside a telehealth platform, and only that.

- ``js/bondline.js``: the browser collector (one script tag per participant);
  ``js/bondline-probe.js``: the browser side of the sidecar probe (with
  ``js/bondline-pilot-tap.js``, the AudioWorklet it loads from the server to
  read the received pilot). All are package data; the server serves them at
  ``/plugin/...`` (CORS like the other plugin files).
- ``uplink`` (with ``outbox``): the Python ingest client.
- ``aiortc_collector``: the collector for aiortc-based platforms.
- ``probe_agent`` and ``cli``: the probe agent and the participant-side
  commands (``bondline probe``, ``bondline analyze-recording``).

It talks to the server over the wire only and never imports ``server``
(checked by ``lint-imports``; docs/architecture.md).
"""
