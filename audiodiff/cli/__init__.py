"""The command line: click commands that parse, call one library function and print."""

from .main import main

__all__ = ["main"]
