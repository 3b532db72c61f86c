"""Run the AMD probe and print its result as JSON; the tests start this under umockdev-run."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from cooee_agent.discovery.gpu import amd, run_isolated
from cooee_agent.discovery.host_paths import HostPaths


def main() -> None:
    ids = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    gpus, failures = run_isolated(amd.PROBE, lambda: amd.probe(HostPaths(amdgpu_ids=ids)))
    json.dump(
        {
            "gpus": [dataclasses.asdict(gpu) for gpu in gpus],
            "failures": [dataclasses.asdict(failure) for failure in failures],
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
