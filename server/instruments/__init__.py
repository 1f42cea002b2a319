"""Instrument files shipped with Bondline (one YAML file per instrument).

This is a package only so the files install with Bondline; the loader is
``server.surveys.instruments``. A clinic adds its own files in the directory
named by ``BONDLINE_INSTRUMENTS_DIR`` rather than here.
"""
