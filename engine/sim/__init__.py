"""The embedded simulated Bybit linear USDT-perpetual exchange (deterministic for a seed).

``exchange.SimExchange`` is the facade over the parts: ``instruments`` (listings and filters), ``feed``
(seeded GBM last/mark prices), ``fills`` (pure fill rules), ``orders`` (working orders, order-entry
checks), ``ledger`` (position and margin arithmetic), ``account`` (one account's state), ``matcher``
(the order lifecycle), ``streams`` (push subscriptions), ``ratelimit``, ``faults``, ``latency``, ``ids``,
``state`` (the snapshot file) and ``journal`` (every change since the snapshot, on disk before the
exchange acknowledges it).

Two ways reach it: ``venue.SimVenue`` adapts it in-process to the Venue contract, and ``server/``
serves it over a fake Bybit V5 API for the real pybit client: ``server.app.BybitServer`` composes the
REST side (``server.rest``) and the WebSocket side (``server.ws``); ``server.command`` is
``opconsole sim-server``.
"""
