"""Round trip of the real pybit client to the fake Bybit V5 server on loopback.

Run: ``/work/venv/bin/python scripts/bybit_rtt.py [--calls N]`` (the server runs in its own process).
Prints the median and p95 of a public GET, a signed GET (wallet balance) and a signed POST (order
create + cancel) through a bare pybit session, and of ``BybitVenue.wallet()`` (thread-pool hop, budget,
parsing included). A server that wrote headers and body in two writes would show ~40 ms here (Nagle
+ delayed ACK); one write gives about 1 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time

from pybit.unified_trading import HTTP

from engine.core.clock import RealClock
from engine.sim.exchange import SimExchange
from engine.sim.server.app import BybitServer
from engine.venue.bybit.keys import ApiKeys
from engine.venue.bybit.venue import BybitVenue

KEY, SECRET = "RTTKEY0123456789", "RTTSECRET0123456789abcdef"


def _summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return f"{name:<34} median {statistics.median(ordered):6.2f} ms   p95 {p95:6.2f} ms   (n={len(ordered)})"


def _serve(ready: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """The server process: its own interpreter, so client and server do not share a GIL."""

    async def run() -> None:
        clock = RealClock()
        exchange = SimExchange(clock=clock, seed=1, symbols=["BTCUSDT"], balances={"main": 1e6})
        # Generous budgets: this measures the wire, not the rate limiter.
        exchange._limits.window_s = 0.001
        server = BybitServer(exchange, {KEY: (SECRET, "main")}, clock)
        ready.put(await server.start())
        await asyncio.Event().wait()

    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()

    ready: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    process = multiprocessing.Process(target=_serve, args=(ready,), daemon=True)
    process.start()
    base_url = ready.get(timeout=30)

    session = HTTP(testnet=True, api_key=KEY, api_secret=SECRET, max_retries=1, return_response_headers=True)
    session.endpoint = base_url
    session.get_server_time()  # warm the keep-alive connection
    public, gets, posts, elapsed = [], [], [], []
    for i in range(args.calls):
        start = time.perf_counter()
        session.get_server_time()
        public.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        _, took, _ = session.get_wallet_balance(accountType="UNIFIED")
        gets.append((time.perf_counter() - start) * 1000)
        elapsed.append(took.total_seconds() * 1000)
        start = time.perf_counter()
        reply, _, _ = session.place_order(
            category="linear",
            symbol="BTCUSDT",
            side="Buy",
            orderType="Limit",
            qty="0.001",
            price=str(50000 + i),
        )
        session.cancel_order(category="linear", symbol="BTCUSDT", orderId=reply["result"]["orderId"])
        posts.append((time.perf_counter() - start) * 1000 / 2)

    async def through_venue() -> list[float]:
        venue = BybitVenue("main", ApiKeys(KEY, SECRET), RealClock(), base_url=base_url, threads=4)
        await venue.wallet()
        samples = []
        for _ in range(args.calls):
            start = time.perf_counter()
            await venue.wallet()
            samples.append((time.perf_counter() - start) * 1000)
        await venue.close()
        return samples

    venue_samples = asyncio.run(through_venue())
    print(_summary("pybit GET /v5/market/time", public))
    print(_summary("pybit GET wallet-balance (signed)", gets))
    print(_summary("  of which request->response", elapsed))
    print(_summary("pybit POST order create/cancel", posts))
    print(_summary("BybitVenue.wallet() end to end", venue_samples))
    process.terminate()


if __name__ == "__main__":
    main()
