"""Reading and writing stage inputs and outputs."""
