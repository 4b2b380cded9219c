"""Scenarios, populations and traffic, the faithful simulation path, and result folders."""

from .runner import run_scenario
from .scenario import Scenario, resolve_scenario

__all__ = ["Scenario", "resolve_scenario", "run_scenario"]
