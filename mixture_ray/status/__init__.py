"""`mixture-ray status DIR`: one table of a run folder's stage folders, read from markers and records only."""
