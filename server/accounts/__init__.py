"""Clinician accounts: login sessions, passwords, API keys and access rules."""
