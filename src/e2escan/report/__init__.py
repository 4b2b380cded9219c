"""Readable tables for the terminal and matplotlib figures for results folders."""

from .tables import format_table, terminal_width

__all__ = ["format_table", "terminal_width"]
