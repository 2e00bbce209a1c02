"""Socket.IO namespace handlers: thin layers over the domain services."""
