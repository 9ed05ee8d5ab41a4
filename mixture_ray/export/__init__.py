"""`mixture-ray export`: the run's data in the formats of the tools pathologists and data scientists use."""
