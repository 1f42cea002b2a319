"""A media server's own statistics as a second, server-side source for a session."""
