"""Montages, the self-contained review page, and mapping files (cluster -> finding)."""
