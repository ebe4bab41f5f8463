"""The HTTP gateway: the only package that imports FastAPI."""
