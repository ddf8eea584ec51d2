"""Stand-ins for the debugger-side Python packages (pykd, ...) that answer from pytriage's offline engine."""
