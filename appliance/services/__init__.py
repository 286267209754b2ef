"""The API's rules, one module per resource: what may be created, changed or deleted and what that
does (rows through ``appliance.data``, jobs through the job store, files through the data layout).
Controllers in ``appliance.api`` only route, validate and wrap answers in the envelope."""
