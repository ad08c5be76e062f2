"""Pure logic of the loops: plain functions over str/pandas/numpy. No Dagster imports here."""
