"""Enrolment: key files, records, the envelope, and sealing between agent and Leader."""

from cooee_agent.enrolment.build import build_enrolment, new_nonce
from cooee_agent.enrolment.errors import KeyFileError, RejectedError
from cooee_agent.enrolment.keys import (
    AgentKeys,
    LeaderBundle,
    LeaderKeys,
    load_or_create_agent_keys,
    parse_bundle,
)
from cooee_agent.enrolment.records import Assignment, EnrolmentRecord
from cooee_agent.enrolment.sealing import (
    Window,
    open_assignment,
    open_enrolment,
    open_plain,
    seal_assignment,
    seal_enrolment,
    seal_plain,
)

__all__ = [
    "AgentKeys",
    "Assignment",
    "EnrolmentRecord",
    "KeyFileError",
    "LeaderBundle",
    "LeaderKeys",
    "RejectedError",
    "Window",
    "build_enrolment",
    "load_or_create_agent_keys",
    "new_nonce",
    "open_assignment",
    "open_enrolment",
    "open_plain",
    "parse_bundle",
    "seal_assignment",
    "seal_enrolment",
    "seal_plain",
]
