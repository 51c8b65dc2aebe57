"""Real-browser tests (a package, so their server, camera and browser stop when they end)."""
