"""A real OpenLDAP for the directory tests: Debian's slapd started in the foreground on a free loopback port, with a
temporary slapd.conf and MDB database, loaded from an LDIF with ldap-utils' ldapadd, and stopped after.

The directory (dc=example,dc=org) holds people under ou=people and groupOfNames groups under ou=groups, with the
memberof overlay so each person also has memberOf (as Active Directory gives it). BASE, GROUPS, PEOPLE and
SERVICE name what is in it; every person's password is PASSWORD.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from support import SLACK

SLAPD = "/usr/sbin/slapd"
BASE = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{BASE}"
ROOT_PASSWORD = "root secret"
SERVICE = (f"cn=screenpop,ou=services,{BASE}", "service secret")  # the account screenpop searches with
PASSWORD = "directory password"
GROUPS = {role: f"cn=screenpop-{role}s,ou=groups,{BASE}" for role in ("operator", "manager", "admin")}

# login -> (display name, telephoneNumber, preferredLanguage, the groups they are in)
PEOPLE = {
    "olga": ("Olga Operator", "2001", "", ["operator"]),
    "oskar": ("Oskar Operator", "2002", "en", ["operator"]),
    "maria": ("Maria Manager", "", "", ["manager", "operator"]),
    "adam": ("Adam Admin", "", "", ["admin"]),
    "nobody": ("Nobody Ingroup", "2009", "", []),
    "thordur": ("Þórður Ævarsson Öxndal", "2003", "is", ["operator"]),
}

CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile {folder}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
database mdb
suffix "{base}"
rootdn "{root_dn}"
rootpw "{root_password}"
directory {folder}/data
maxsize 16777216
overlay memberof
access to attrs=userPassword by self write by anonymous auth by * none
access to * by dn.exact="{service}" read by self read by * none
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entries() -> str:
    """The directory's contents as LDIF: the tree, the service account, the people, the groups."""
    out = [f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n"]
    for ou in ("people", "groups", "services"):
        out.append(f"dn: ou={ou},{BASE}\nobjectClass: organizationalUnit\nou: {ou}\n")
    out.append(f"dn: {SERVICE[0]}\nobjectClass: person\ncn: screenpop\nsn: service\nuserPassword: {SERVICE[1]}\n")
    for login, (name, phone, language, _) in PEOPLE.items():
        entry = (f"dn: uid={login},ou=people,{BASE}\nobjectClass: inetOrgPerson\nuid: {login}\ncn: {name}\n"
                 f"sn: {name.split()[-1]}\ndisplayName: {name}\nuserPassword: {PASSWORD}\nmail: {login}@example.org\n")
        entry += f"telephoneNumber: {phone}\n" if phone else ""
        entry += f"preferredLanguage: {language}\n" if language else ""
        out.append(entry)
    for role, dn in GROUPS.items():
        members = [f"uid={login},ou=people,{BASE}" for login, person in PEOPLE.items() if role in person[3]]
        out.append(f"dn: {dn}\nobjectClass: groupOfNames\ncn: screenpop-{role}s\n"
                   + "".join(f"member: {m}\n" for m in members or [SERVICE[0]]))
    return "\n".join(out)


class LdapServer:
    """slapd in a temporary folder on 127.0.0.1:port; stop() and start() again at will, close() removes it all."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="screenpop-ldap-")
        os.mkdir(f"{self.folder}/data")
        self.port = _free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        with open(f"{self.folder}/slapd.conf", "w") as fh:
            fh.write(CONF.format(folder=self.folder, base=BASE, root_dn=ROOT_DN, root_password=ROOT_PASSWORD,
                                 service=SERVICE[0]))
        self.proc: subprocess.Popen | None = None
        self.start()
        self.ldif("ldapadd", _entries())

    def start(self) -> None:
        """slapd in the foreground (-d: no fork), answering once its port takes connections."""
        self.log = open(f"{self.folder}/slapd.log", "ab")
        self.proc = subprocess.Popen([SLAPD, "-d", "0", "-f", f"{self.folder}/slapd.conf", "-h", self.url + "/"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10 * SLACK
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"slapd ended at start: {open(f'{self.folder}/slapd.log').read()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("slapd did not listen in time")

    def ldif(self, tool: str, text: str) -> None:
        """Run ldapadd or ldapmodify as the directory's root with text as its LDIF."""
        subprocess.run([tool, "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PASSWORD], input=text.encode(),
                       check=True, capture_output=True, timeout=30 * SLACK)

    def pause(self, paused: bool) -> None:
        """Freeze slapd (it accepts connections but answers nothing: a directory that hangs) or let it go on."""
        self.proc.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10 * SLACK)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
