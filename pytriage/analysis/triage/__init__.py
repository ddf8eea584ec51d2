"""`!pytriage`: network-aware crash triage (DESIGN 6): classification, forensics, blame, buckets."""
