"""Symbols: symbol path and store, PDB and ISF readers, built-in layouts, the symbolizer (DESIGN 4)."""
