"""`mixture-ray classify`: a fine-tuned finding classifier over every cohort tile (Ray Data actors)."""
