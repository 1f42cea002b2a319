"""Stats recorded outside Bondline (Chromium dumps), imported as samples."""
