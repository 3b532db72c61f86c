"""Fixtures for enrolment tests: a Leader identity on disk and fresh agent keys."""

from enrolment_factory import keys, leader_dir, leader_keys  # noqa: F401
