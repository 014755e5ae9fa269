"""Tabletop exercises: people hold some seats of an operation, agents play the others,
a director paces the clock and fires injects from a browser (docs/exercises.md)."""
