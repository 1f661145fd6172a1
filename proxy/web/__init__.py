"""The HTTP edge: aiohttp application, middleware, HF / torch / admin routes."""
