"""The Leader's read-only HTTP face (``leader serve --http``): the JSON API, ``/metrics`` and
the fleet page, on the bounded server of ``cooee_agent.web``."""
