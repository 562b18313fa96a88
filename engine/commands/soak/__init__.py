"""``opconsole soak``: a simulated day of trading under faults and kill -9 (see :mod:`.command`)."""
