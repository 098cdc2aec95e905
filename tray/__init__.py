"""The screenpop workstation tray client. Imports nothing of screenpop but tray (the daemon's stack never loads)."""
