"""Response headers, origin checks and static assets shared by every page."""
