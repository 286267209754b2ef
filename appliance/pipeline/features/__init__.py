"""Pipeline stage 5, features: the feature pass over held-out text, interactive probes of one feature, labels."""
