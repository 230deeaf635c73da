"""One module per resource: typed handlers that parse, call one use case and serialise.

A handler declares its path and query parameters, its body and its responses with types (msgspec
Structs), so the OpenAPI schema describes the real API; it gets what it works with by parameter name
(services/api/dependencies.py) and declares its error responses with ``errors(...)``.
"""
