"""Pipeline stage 6, steering: generation with and without feature interventions."""
