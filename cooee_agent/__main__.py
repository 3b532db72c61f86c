"""``python -m cooee_agent``: the ``cooee-agent`` command."""

from cooee_agent.cli import main

main()
