"""Job parameters: one msgspec Struct per job kind, the contract between the API (which builds and
encodes it) and the worker (whose runner decodes it and calls ``handler(ctx, params)``). Torch-free,
and free of untyped dicts: a field is a typed value or another Struct of this package."""
