"""Pipeline stage 2, models: load a causal LM at a precision, download and register it, read its architecture;
the cache of loaded models for interactive work."""
