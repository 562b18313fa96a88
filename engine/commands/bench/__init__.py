"""``opconsole bench``: the seed's performance table, measured for the baseline and the optimized profile.

One seeded workload (:mod:`.workload`) runs once per profile, each in a fresh spawned child process
(:mod:`.child`, measuring in :mod:`.profile_run`), so memory and CPU are that profile's own. The
figures come from the engine's own counters (store, cache, venue gateways, monitor checks), the
requests the engine sent (:mod:`.requests`: reaction latency) and a dashboard refresh loop at the
console's rate (:mod:`.refresh`). :mod:`.outcome` checks that both profiles closed the same trades,
:mod:`.report` turns the raw figures into the JSON document and the table, and :mod:`.command` is
the command itself. :mod:`.save_pattern` replays the original bot's save pattern into the store
(``scripts/persistence_policy_bench.py``).
"""
