"""The Target interface (DESIGN 2.1): analysis reads memory and crash facts only through it."""

from pytriage.target.base import Target
from pytriage.target.model import Module, ReadStats

__all__ = ["Target", "Module", "ReadStats"]
