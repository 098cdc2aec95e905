"""The screenpop workstation tray client; cli.py is its command line (`screenpop tray`, the PyInstaller bundle's
script). Imports nothing of screenpop but tray (the daemon's stack never loads)."""
