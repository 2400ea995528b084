"""photoq: self-hosted photo upload and background processing."""

__version__ = "0.1.0"
