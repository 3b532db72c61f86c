"""A small, bounded, read-only HTTP server for operators: the Leader's API and fleet page, and
the ``/metrics`` of the Leader and the agent. It knows nothing of either; they hand it routes."""
