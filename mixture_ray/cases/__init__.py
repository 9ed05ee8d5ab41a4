"""`mixture-ray cases`: per-case finding counts and frequencies, and the non-integrated baseline."""
