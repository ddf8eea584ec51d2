"""Pool (DESIGN 7): which allocation holds an address, whether the pool around it is intact, who owns a tag."""
