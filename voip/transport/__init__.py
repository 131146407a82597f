"""SIP transports: asyncio adapters that move bytes between sockets and the endpoint."""
