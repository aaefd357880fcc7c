"""Adapters: one module per chat surface, turning its events into Inbound messages."""
