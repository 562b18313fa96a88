"""The fake Bybit V5 server (REST + WebSocket) over the simulated exchange, for the real pybit client."""
