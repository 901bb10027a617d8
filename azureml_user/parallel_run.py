"""Azure ML's entry-script helper module, served by daskprs."""

from daskprs.entry_script import EntryScript

__all__ = ["EntryScript"]
