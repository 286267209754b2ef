"""Pipeline stage 5, features: the feature pass over held-out text, interactive probes of one feature, explanations
by a language model and their scores."""
