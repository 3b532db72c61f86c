"""Leader tests share the enrolment tests' builders and fixtures."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "protocol"))

from enrolment_factory import keys, leader_dir, leader_keys  # noqa: F401
