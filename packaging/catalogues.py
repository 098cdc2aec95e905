#!/usr/bin/env python3
"""Extract every translatable string from the sources and bring the .po catalogues in step with them (docs/i18n.md).

    .venv/bin/python packaging/catalogues.py           # extract, update daemon/locale and tray/locale
    .venv/bin/python packaging/catalogues.py --check   # exit 1 if a catalogue is stale or a catalogue incomplete

Two domains: screenpop (daemon/: pages, templates, API errors, CLI; db/: the database URL's errors) and tray (tray/:
menu, notifications, its CLI):
the tray never imports the daemon, so it carries its own catalogue. The English catalogue repeats the source
strings (so wording can change there without touching code); the Icelandic one is written by people. New strings
arrive with an empty msgstr, which --check (and tests/daemon/test_i18n.py) reports.
"""
from __future__ import annotations

import argparse
import copy
import io
import sys
from pathlib import Path

from babel import Locale
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ("en", "is")
# the translation functions, the marker of words translated elsewhere (argparse's), and the errors raised below
# daemon/i18n.py whose message is a msgid translated where it is shown
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None, "lazy_ngettext": (1, 2),
            "gettext_noop": None, "ConfigError": None, "DatabaseUrlError": None}
PYTHON = [("**.py", "python")]
# (domain, the folder holding its locale/, the source folders with what is extracted how); templates are Jinja with the
# i18n extension
DOMAINS = (
    ("screenpop", ROOT / "daemon", [(ROOT / "daemon", [("**/templates/**.html", "jinja2"), *PYTHON]), (ROOT / "db", PYTHON)]),
    ("tray", ROOT / "tray", [(ROOT / "tray", PYTHON)]),
)


def extract(domain: str, sources: list[tuple[Path, list[tuple[str, str]]]]) -> Catalog:
    """Every string of the source folders in gettext calls, with where it is used."""
    template = Catalog(project="screenpop", domain=domain, charset="utf-8")
    options = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    for folder, method_map in sources:
        for filename, lineno, message, comments, context in extract_from_dir(
                folder, method_map, options_map=options, keywords=KEYWORDS, comment_tags=("TRANSLATORS:",)):
            template.add(message, None, [(str(Path(folder.name) / filename), lineno)], auto_comments=comments,
                         context=context)
    return template


def po_text(catalog: Catalog) -> bytes:
    out = io.BytesIO()
    write_po(out, catalog, width=120, omit_header=False, sort_output=False, include_lineno=False)
    return out.getvalue()


def refreshed(path: Path, language: str, template: Catalog, domain: str) -> Catalog:
    """The catalogue at path brought in step with template: new strings added, gone ones dropped; English filled."""
    if path.exists():
        with path.open("rb") as fh:
            catalog = read_po(fh, locale=language, domain=domain)
    else:
        catalog = Catalog(locale=language, domain=domain, project="screenpop", version="", charset="utf-8", fuzzy=False,
                          header_comment=f"# {domain}: the {Locale.parse(language).english_name} catalogue (docs/i18n.md)",
                          copyright_holder="the screenpop authors", language_team="screenpop")
    created = catalog.creation_date
    catalog.update(copy.deepcopy(template), no_fuzzy_matching=True)
    catalog.creation_date = created  # the header changes only when a translation does
    catalog.obsolete.clear()
    if language == "en":
        for message in catalog:
            if message.id and not any(message.string if isinstance(message.string, tuple) else (message.string,)):
                message.string = message.id
    return catalog


def missing(catalog: Catalog) -> list[str]:
    """The strings of a catalogue with no translation (or only a fuzzy one)."""
    out = []
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy or not all(strings):
            out.append(message.id if isinstance(message.id, str) else message.id[0])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if anything is stale or missing")
    args = parser.parse_args(argv)
    problems = []
    for domain, folder, sources in DOMAINS:
        template = extract(domain, sources)
        for language in LANGUAGES:
            path = folder / "locale" / language / "LC_MESSAGES" / f"{domain}.po"
            catalog = refreshed(path, language, template, domain)
            text = po_text(catalog)
            if args.check:
                old = read_po(path.open("rb"), locale=language) if path.exists() else Catalog()
                if {m.id for m in old if m.id} != {m.id for m in catalog if m.id}:
                    problems.append(f"{path.relative_to(ROOT)}: not in step with the sources (run packaging/catalogues.py)")
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(text)
            for message_id in missing(catalog):
                problems.append(f"{path.relative_to(ROOT)}: untranslated: {message_id!r}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
