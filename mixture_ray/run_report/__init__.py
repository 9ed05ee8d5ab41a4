"""`mixture-ray report`: one self-contained HTML page summarising a run folder."""
