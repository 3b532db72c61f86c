"""``cooee-agent token encode|decode``: the agent token codec on the command line.

A plain verb (argparse, no typer): people and scripts run it in loops, and without typer it
starts in well under half the time (benchmarks/cli_startup.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from cooee_agent.cli.output import emit_json
from cooee_agent.errors import TokenError
from cooee_agent.identity import token as codec

ENCODE_HELP = "Print the token for a host id and GPU slot."
DECODE_HELP = "Print the fields of each token, one line each; exit 2 if any token is invalid."


def main(argv: list[str], prog: str) -> None:
    """Parse ``argv`` (what follows ``token``) and run encode or decode."""
    parser = _parser(prog)
    if not argv:
        parser.print_help()
        raise SystemExit(2)  # as the typer verbs' "no arguments: help", a usage error
    args = parser.parse_args(argv)
    if args.verb == "encode":
        encode(args.host_id, args.gpu_slot, args.token_version, args.reserved, args.json)
    else:
        decode(args.tokens, args.json)


def encode(host_id: int, gpu_slot: int, token_version: int, reserved: int, as_json: bool) -> None:
    text = codec.encode(token_version, host_id, gpu_slot, reserved)
    if as_json:
        emit_json(_as_dict(text, codec.decode(text)))
    else:
        print(text)


def decode(tokens: Sequence[str], as_json: bool) -> None:
    decoded: list[dict[str, object]] = []
    failures: list[TokenError] = []
    for text in tokens:
        try:
            token = codec.decode(text)
        except TokenError as error:
            failures.append(error)
            decoded.append({"input": text, "error": str(error)})
            continue
        decoded.append(_as_dict(text, token))
    if as_json:
        emit_json(decoded)
    else:
        for entry in decoded:
            if "error" not in entry:
                print(
                    f"{entry['token']}  version={entry['version']} host_id={entry['host_id']} "
                    f"gpu_slot={entry['gpu_slot']} reserved={entry['reserved']}"
                )
    if failures:
        # Each bad token is named on stderr; the last error sets the exit code.
        sys.stdout.flush()
        for failure in failures[:-1]:
            print(f"cooee-agent: error: {failure}", file=sys.stderr)
        raise failures[-1]


def _as_dict(text: str, token: codec.Token) -> dict[str, object]:
    return {
        "input": text,
        "token": token.text,
        "version": token.version,
        "host_id": token.host_id,
        "gpu_slot": token.gpu_slot,
        "reserved": token.reserved,
        "checksum": token.checksum,
    }


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help with the typer verbs' "Usage:" heading."""

    def add_usage(
        self,
        usage: str | None,
        actions: Iterable[argparse.Action],
        groups: Iterable[Any],
        prefix: str | None = None,
    ) -> None:
        super().add_usage(usage, actions, groups, "Usage: " if prefix is None else prefix)


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Encode and decode 5-character agent tokens.",
        formatter_class=_HelpFormatter,
    )
    verbs = parser.add_subparsers(dest="verb", required=True, title="Commands", metavar="COMMAND")

    enc = verbs.add_parser(
        "encode",
        help=ENCODE_HELP,
        description=ENCODE_HELP,
        formatter_class=_HelpFormatter,
    )
    enc.add_argument(
        "--host-id", type=int, required=True, help="Host id assigned by the Leader, 0-1023."
    )
    enc.add_argument("--gpu-slot", type=int, required=True, help="GPU slot on the host, 0-15.")
    enc.add_argument("--token-version", type=int, default=1, help="Token format version, 0-7.")
    enc.add_argument("--reserved", type=int, default=0, help="Reserved bits, 0-3 (keep 0).")
    enc.add_argument("--json", action="store_true", help="Print a JSON object.")

    dec = verbs.add_parser(
        "decode",
        help=DECODE_HELP,
        description=DECODE_HELP,
        formatter_class=_HelpFormatter,
    )
    dec.add_argument("tokens", nargs="+", help="One or more tokens (case and hyphens ignored).")
    dec.add_argument("--json", action="store_true", help="Print a JSON array of objects.")
    return parser
