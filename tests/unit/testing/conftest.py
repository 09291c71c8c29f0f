"""Fixtures for the fake-server and demo-field tests."""

from __future__ import annotations
