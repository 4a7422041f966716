"""Shared working memory in Redis: versioned values, conversations, and the key layout."""

from .conversation import Conversation, Message
from .working import Versioned, WorkingMemory

__all__ = ["Conversation", "Message", "Versioned", "WorkingMemory"]
