"""Commands: argument-independent results (dataclasses) and their text/JSON renderers."""
