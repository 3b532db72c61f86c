"""``cooee-agent token encode|decode``: the agent token codec on the command line."""

from __future__ import annotations

import typer

from cooee_agent.cli.output import emit_json
from cooee_agent.errors import TokenError
from cooee_agent.identity import token as codec

app = typer.Typer(help="Encode and decode 5-character agent tokens.", no_args_is_help=True)


@app.command()
def encode(
    host_id: int = typer.Option(..., "--host-id", help="Host id assigned by the Leader, 0-1023."),
    gpu_slot: int = typer.Option(..., "--gpu-slot", help="GPU slot on the host, 0-15."),
    token_version: int = typer.Option(1, "--token-version", help="Token format version, 0-7."),
    reserved: int = typer.Option(0, "--reserved", help="Reserved bits, 0-3 (keep 0)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """Print the token for a host id and GPU slot."""
    text = codec.encode(token_version, host_id, gpu_slot, reserved)
    if as_json:
        emit_json(_as_dict(text, codec.decode(text)))
    else:
        typer.echo(text)


@app.command()
def decode(
    tokens: list[str] = typer.Argument(..., help="One or more tokens (case and hyphens ignored)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array of objects."),
) -> None:
    """Print the fields of each token, one line each; exit 2 if any token is invalid."""
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
                typer.echo(
                    f"{entry['token']}  version={entry['version']} host_id={entry['host_id']} "
                    f"gpu_slot={entry['gpu_slot']} reserved={entry['reserved']}"
                )
    if failures:
        # Each bad token is named on stderr; the last error sets the exit code.
        for failure in failures[:-1]:
            typer.echo(f"cooee-agent: error: {failure}", err=True)
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
