"""The HTTP API (Litestar): one module per resource, the envelope and errors of DECISIONS §4."""
