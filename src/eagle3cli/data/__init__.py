"""Conversation data: the canonical record, readers for chat dataset formats."""
