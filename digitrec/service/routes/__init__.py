"""URL handlers, one module per audience: the JSON API, the seed-compatible URLs, pages, probes."""
