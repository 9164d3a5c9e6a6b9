"""`lmx`: a command-line client for a running LMX server, over its REST API only (no Django, no
MLX), so it runs from any machine that can reach the server."""
