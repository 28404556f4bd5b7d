"""The HTTP edge (JSON, under /v1): app.py routes each path to a handler in the module of its
resource (jobs, runs, logs, exec, recipes, node), which parses the request, calls a service and
responds. Errors become `{"error": {"code", "message"}}` in one middleware; the TCP listener
needs the bearer token and the Unix socket identifies callers by their peer credentials
(middleware.py)."""
