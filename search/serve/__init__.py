"""The HTTP edge: the FastAPI app, its schemas, guards, metrics, MCP tools and report routes."""
