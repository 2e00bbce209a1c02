"""Socket.IO on aiohttp: the server and its managers, Redis pub/sub, broadcasting to rooms,
wire payloads and validation, packet encoding, origin checks."""
