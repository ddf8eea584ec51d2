"""Batch triage of a folder of kernel dumps (``pytriage batch DIR``).

Support teams receive dumps by the hundred; one ``pytriage analyze`` per file does not scale and stops at the
first bad file. The pieces here keep a batch going and make it cheap to repeat:

- ``discover``: which files are kernel dumps, by signature, not by name;
- ``identity`` + ``store``: each dump's content hash and its triage result in SQLite, keyed by (sha256, tool
  version), so a re-run only triages what it has not seen and grouping is a query;
- ``task`` + ``child``: the per-dump task, run in a reusable worker process that can be killed when it hangs
  or grows past its memory cap, so one bad dump costs one row, never the batch;
- ``runner`` + ``progress``: jobs in parallel, a progress bar, Ctrl-C that leaves a consistent partial result.
"""
