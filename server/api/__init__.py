"""The integrator-facing JSON API that spans features (sessions with their
participants' tokens and survey links, stored samples and events)."""
