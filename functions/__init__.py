"""Thin Lambda handlers: parse the event, call one use case from `alluse.application`, shape the response."""
