"""The one engine scheduler and the urgency tiers that time the monitors' checks.

Every periodic piece of engine work — the per-tier monitor checks, reconciliation, execution polls,
store flushes, cache metric logs, price-alert checks, later the daily summary and mirror drift checks —
runs as a named job of the :class:`~engine.scheduler.jobs.Scheduler` on the engine clock, never as a
``while True: sleep`` loop of its own (``jobs``); ``urgency`` decides, purely, how often each monitor
needs checking. The package imports only ``engine.core`` and the standard library.
"""
