"""Operating the loops: sensors, the review job and other Dagster objects around the loops."""
