"""Readable tables for the terminal and matplotlib figures for results folders."""

from .tables import format_table

__all__ = ["format_table"]
