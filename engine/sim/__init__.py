"""The embedded simulated Bybit linear USDT-perpetual exchange (deterministic for a seed).

``exchange.SimExchange`` is the facade; ``engine.sim.venue.SimVenue`` adapts it to the Venue
contract and ``bybit_server`` serves it over a fake Bybit V5 HTTP/WebSocket API. The parts:
``instruments`` (listings and filters), ``feed`` (seeded GBM last/mark prices), ``fills`` (pure fill
rules), ``orders`` (working orders, order-entry checks), ``ledger`` (position and margin arithmetic),
``account`` (one account's state), ``matcher`` (the order lifecycle), ``streams`` (push
subscriptions), ``ratelimit``, ``faults``, ``latency``, ``ids`` and ``state`` (the JSON state file).
"""
