"""The tray client's own small TOML file: which daemon, which extension, which token.

Default location `$XDG_CONFIG_HOME/screenpop/tray.toml` (`%APPDATA%\\screenpop\\tray.toml` on Windows). It holds
a secret (the API token), so `save` writes it with mode 0600 in a folder of mode 0700.
"""
from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from urllib.parse import urlsplit

from screenpop.tray.i18n import gettext as _

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_SERVER = "http://127.0.0.1:8080"
MIN_MISSED_REFRESH = 5.0  # the daemon counts the missed calls for each request: no tighter loop than this


class TrayConfigError(Exception):
    """The file or a value in it is wrong; the message names the file and the key."""


@dataclass(frozen=True)
class TrayConfig:
    server: str = DEFAULT_SERVER
    extension: str = ""
    token: str = ""
    token_file: str = ""
    notification_timeout: float = 30.0  # seconds a pop stays up; 0 = until dismissed
    do_not_disturb: bool = False  # start in do-not-disturb
    missed_refresh: float = 60.0  # seconds between reads of the missed calls to return; 0 = only on start and pops
    language: str = ""  # "en" or "is"; "" = the desktop session's (docs/i18n.md)

    def resolved_token(self) -> str:
        """The token itself, read from token_file when that is set (re-read on every call: it may be rotated)."""
        if self.token_file:
            try:
                return Path(self.token_file).expanduser().read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise TrayConfigError(f"token_file {self.token_file}: {exc.strerror or exc}") from None
        return self.token.strip()

    def url(self, path: str) -> str:
        """An absolute URL on the daemon for a path the daemon gave (always relative, starting with /)."""
        return self.server.rstrip("/") + "/" + path.lstrip("/")


def default_path() -> Path:
    """Where the tray config lives unless --config or $SCREENPOP_TRAY_CONFIG says otherwise."""
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "screenpop" / "tray.toml"


def _check_server(value: str, where: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TrayConfigError(f"{where}: server must be an http:// or https:// URL, not {value!r}")
    return value.rstrip("/")


def validate(config: TrayConfig, where: str = "tray config") -> TrayConfig:
    """Check every value; return the config with the server URL normalised."""
    server = _check_server(config.server, where)
    if config.notification_timeout < 0:
        raise TrayConfigError(f"{where}: notification_timeout must be 0 (until dismissed) or more seconds")
    if config.missed_refresh < 0 or 0 < config.missed_refresh < MIN_MISSED_REFRESH:
        raise TrayConfigError(f"{where}: missed_refresh must be 0 (only on start and after pops) or at least "
                              f"{MIN_MISSED_REFRESH:g} seconds")
    if config.language not in ("", "en", "is"):
        raise TrayConfigError(f"{where}: language must be en or is (or empty: the desktop's), not {config.language!r}")
    if any(ch in config.extension for ch in "\r\n\t /"):
        raise TrayConfigError(f"{where}: extension {config.extension!r} is not an extension")
    return replace(config, server=server)


_TYPES = {f.name: f.type for f in fields(TrayConfig)}


def load(path: str | os.PathLike | None = None) -> TrayConfig:
    """Read the file (a missing file gives the defaults); unknown keys and wrong types are errors."""
    path = Path(path) if path else default_path()
    if not path.exists():
        return TrayConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise TrayConfigError(f"{path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TrayConfigError(f"{path}: not valid TOML: {exc}") from None
    values = {}
    for key, value in data.items():
        kind = _TYPES.get(key)
        if kind is None:
            raise TrayConfigError(f"{path}: unknown key {key!r} (known: {', '.join(_TYPES)})")
        if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        elif kind == "bool" and isinstance(value, bool) or kind == "str" and isinstance(value, str):
            pass
        else:
            raise TrayConfigError(f"{path}: {key} must be a {'number' if kind == 'float' else kind}, not {value!r}")
        values[key] = value
    return validate(TrayConfig(**values), str(path))


def dumps(config: TrayConfig) -> str:
    """The config as TOML text (JSON string escapes are valid TOML basic-string escapes)."""
    lines = ["# screenpop tray client (written by `screenpop tray --setup`)"]
    for f in fields(TrayConfig):
        value = getattr(config, f.name)
        if f.name in ("token", "token_file") and not value:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, float):
            text = f"{value:g}" if value != int(value) else str(int(value))
        else:
            text = json.dumps(value)
        lines.append(f"{f.name} = {text}")
    return "\n".join(lines) + "\n"


def save(config: TrayConfig, path: str | os.PathLike | None = None) -> Path:
    """Write the config readable by its owner only (0600), replacing the file atomically."""
    path = Path(path) if path else default_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # an old .tmp may have had other bits
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fd = -1
            fh.write(dumps(config))
    finally:
        if fd >= 0:
            os.close(fd)
    os.replace(tmp, path)
    return path


def setup(
    path: str | os.PathLike | None,
    server: str | None = None,
    extension: str | None = None,
    token: str | None = None,
    token_file: str | None = None,
    interactive: bool | None = None,
    ask: Callable[[str], str] = input,
    ask_secret: Callable[[str], str] = getpass.getpass,
) -> Path:
    """`screenpop tray --setup`: start from the existing file, apply the flags, ask for what is still
    missing when on a terminal, check and write. Without a terminal every missing required value is an error."""
    path = Path(path) if path else default_path()
    try:
        current = load(path)
    except TrayConfigError:
        current = TrayConfig()
    if interactive is None:
        interactive = sys.stdin.isatty() and not (extension and (token or token_file))
    values = {"server": server, "extension": extension, "token": token, "token_file": token_file}
    if interactive:
        if server is None:
            values["server"] = ask(_("Server URL [%(current)s]: ", current=current.server)).strip() or current.server
        if extension is None:
            values["extension"] = ask(_("Your extension [%(current)s]: ", current=current.extension)).strip() or current.extension
        if token is None and token_file is None:
            hint = " (Enter keeps the current one)" if current.token or current.token_file else ""
            values["token"] = ask_secret(f"API token from `screenpop token create`{hint}: ").strip() or None
    new = replace(current, **{k: v for k, v in values.items() if v is not None})
    if token is not None or values["token"]:
        new = replace(new, token_file="")
    elif token_file is not None:
        new = replace(new, token="")
    new = validate(new, "setup")
    missing = [k for k in ("extension",) if not getattr(new, k)]
    if not (new.token or new.token_file):
        missing.append("token")
    if missing:
        raise TrayConfigError(f"setup: missing {', '.join(missing)} (give --{' --'.join(missing)})")
    return save(new, path)
