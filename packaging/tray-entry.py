"""Entry point of the PyInstaller tray build (packaging/tray.spec): `screenpop tray` with this command line."""
import sys

from screenpop.daemon.cli import main

sys.exit(main(["tray", *sys.argv[1:]]))
