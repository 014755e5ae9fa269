"""The teaching lesson: step through an operation's traffic one message at a time and
see it as written, as the hub stores it and as each member reads it (docs/teaching.md)."""
