"""Conversation analysis of call recordings (docs/analysis.md): audio figures per side, speech to text, phrase
alerts; the CPU work in a process of its own, fed by a bounded queue."""
