"""Bondline server: ingest, sidecar peer, storage, surveys, analysis, web UI."""

__version__ = "0.1.0"
