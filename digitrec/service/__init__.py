"""The WSGI service: pages, JSON API, seed-compatible endpoints, micro-batching, metrics."""
