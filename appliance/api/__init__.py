"""The HTTP API (Litestar): one module per resource, the success envelope and the one error format."""
