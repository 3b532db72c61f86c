"""The table of CLI verbs: each names the module that implements it, imported only when it runs.

A new verb is one row here and one module beside this one. ``--help`` lists the verbs from this
table alone, so it keeps each verb's one-line help: listing twelve verbs must not import twelve
modules and what they import. A test checks each line against the verb's own help.

This module is on every start-up path: it imports nothing.
"""

from __future__ import annotations

from typing import NamedTuple


class Verb(NamedTuple):
    """Where a verb lives and how it parses its arguments.

    ``attribute`` is a ``typer.Typer`` (a verb with sub-verbs) or a command function, run under
    the typer root; with ``plain`` it is ``main(argv, prog)``, which parses its own arguments
    with argparse and runs without typer, whose import alone is most of a start-up.
    """

    module: str
    attribute: str
    help: str
    plain: bool = False


VERBS: dict[str, Verb] = {
    "discover": Verb(
        "cooee_agent.cli.discover",
        "discover",
        "Discover host, primary MAC, GPUs and Ollama models; exit 1 if no identity can be formed.",
    ),
    "enrol": Verb(
        "cooee_agent.cli.enrol",
        "enrol",
        "Set this host up to enrol: the wizard, or --non-interactive with flags.",
    ),
    "run": Verb(
        "cooee_agent.cli.run",
        "run",
        "Run the agent: discover, enrol with the Leader, announce availability until stopped.",
    ),
    "status": Verb(
        "cooee_agent.cli.status",
        "main",
        "Show enrolment state, host_id, tokens, peers, last heartbeat and outbox depth.",
        plain=True,
    ),
    "intervene": Verb(
        "cooee_agent.cli.intervene",
        "intervene",
        "Queue an intervention call; the running agent publishes it on cooee/intervention/v1.",
    ),
    "submit": Verb(
        "cooee_agent.cli.submit",
        "app",
        "Submit a PR or DR to SLURP; the running agent publishes it on cooee/submission/v1.",
    ),
    "submissions": Verb(
        "cooee_agent.cli.submit",
        "submissions",
        "List the PRs and DRs this host submitted and each one's state.",
    ),
    "resolve": Verb(
        "cooee_agent.cli.resolve",
        "resolve",
        "Name the host, GPU slot and agent tuples a token stands for.",
    ),
    "token": Verb(
        "cooee_agent.cli.token",
        "main",
        "Encode and decode 5-character agent tokens.",
        plain=True,
    ),
    "leader": Verb(
        "cooee_agent.cli.leader",
        "app",
        "Run the reference Leader: on the mesh, or by hand.",
    ),
    "dev": Verb(
        "cooee_agent.cli.dev",
        "dev",
        "Enrol this host with a throw-away Leader on loopback and show the flow live.",
    ),
}
