"""The sidecar: the server's probe peer (docs/probe.md).

A participant (its browser through ``Bondline.probe()``, or ``bondline
probe``) opens a small second peer connection to the server through the
``/v1/probe`` WebSocket. The sidecar answers with a ``media.probe``
endpoint, measures what it receives from the participant, stores that as
``bondline.sample/1`` samples with source ``probe`` through the same ingest
writer as all telemetry, and records disruption events. It also serves the
pre-session connection check page.
"""
