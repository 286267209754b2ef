"""The processes and commands of ``mistudio``: the API server, the worker, ``up``, ``doctor``, ``demo``
and ``bench``."""
