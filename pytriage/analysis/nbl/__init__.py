"""NET_BUFFER_LIST chains, their packets and nwifi's DOT11 completion stacks (DESIGN 8, !nblwalk)."""
