"""A real IMAP server for tests: Debian's Dovecot 2.3, started on a free
127.0.0.1 port with its own temporary configuration (never the system
service) and one maildir per user.

Every test gets a user of its own (``DovecotServer.new_user``), so one
server serves a whole session and tests never see each other's mail. Any
user name logs in with ``PASSWORD`` (a static passdb: a passwd-file is
re-read at most once a second, too slow for a user per test).
Messages are placed by IMAP APPEND, as a mail server would deliver them.

``tls=True`` adds a self-signed certificate (for 127.0.0.1): the plain
port then offers STARTTLS and an implicit-TLS (imaps) port opens too.
``capabilities`` overrides what the server announces after login (Dovecot's
``imap_capability``), e.g. a server without MOVE.

Service files live under ``tempfile.mkdtemp()`` made world-readable, not
pytest's ``tmp_path``: Dovecot's auth and mail processes run as ``nobody``
and cannot enter a 0700 folder.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from imapclient import IMAPClient

from tests.waiting import wait_until

DOVECOT_CANDIDATES = ("dovecot", "/usr/sbin/dovecot")
PASSWORD = "secret-imap-password"
_user_numbers = itertools.count(1)


def find_dovecot() -> str | None:
    for candidate in DOVECOT_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    key.chmod(0o644)  # read by Dovecot's login processes
    return cert, key


def _run_as_lines() -> str:
    """As non-root, Dovecot's own processes run as the current user."""
    if os.geteuid() == 0:
        return ""
    user = pwd.getpwuid(os.geteuid()).pw_name
    return (
        f"default_internal_user = {user}\ndefault_login_user = {user}\n"
        f"default_internal_group = {user}\n"
    )


def _mail_owner() -> str:
    """Mail is never owned by uid 0, even as root (Dovecot refuses it)."""
    if os.geteuid() == 0:
        return "uid=nobody gid=nogroup"
    return f"uid={os.geteuid()} gid={os.getegid()}"


@dataclass
class DovecotServer:
    folder: Path
    port: int
    imaps_port: int
    process: subprocess.Popen[bytes]
    cert: Path | None

    # ------------------------------------------------------------- users

    def new_user(self) -> str:
        """A user with an empty mailbox, for one test."""
        return f"bounces{next(_user_numbers)}"

    def url(self, user: str, folder: str = "INBOX", *, scheme: str = "imap") -> str:
        port = self.imaps_port if scheme == "imaps" else self.port
        return f"{scheme}://{user}:{PASSWORD}@127.0.0.1:{port}/{quote(folder)}"

    def maildir(self, user: str) -> Path:
        return self.folder / "mail" / user

    # ------------------------------------------------------------- IMAP helpers

    def client(self, user: str) -> IMAPClient:
        """A logged-in client on the plain port, as a mail server or a
        person would use the mailbox next to the poller."""
        client = IMAPClient("127.0.0.1", self.port, ssl=False, timeout=30)
        if self.cert is not None:
            client.starttls(self.ssl_context())
        client.login(user, PASSWORD)
        return client

    def ssl_context(self) -> ssl.SSLContext:
        assert self.cert is not None
        return ssl.create_default_context(cafile=str(self.cert))

    def append(self, user: str, messages: list[bytes], folder: str = "INBOX") -> None:
        """Deliver ``messages`` by IMAP APPEND (creating ``folder``)."""
        with self.client(user) as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            for message in messages:
                client.append(folder, message)

    def contents(self, user: str, folder: str) -> dict[int, tuple[bytes, tuple[bytes, ...]]]:
        """Each message of ``folder`` (by UID): its bytes and flags, read
        without setting \\Seen; an empty dict when the folder does not exist."""
        with self.client(user) as client:
            if not client.folder_exists(folder):
                return {}
            client.select_folder(folder, readonly=True)
            uids = client.search("ALL")
            if not uids:
                return {}
            fetched = client.fetch(uids, ["BODY.PEEK[]", "FLAGS"])
            return {uid: (data[b"BODY[]"], tuple(data[b"FLAGS"])) for uid, data in fetched.items()}

    def bodies(self, user: str, folder: str) -> list[bytes]:
        return [body for body, _flags in self.contents(user, folder).values()]

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        with self.client(user) as client:
            status = client.folder_status(folder, [b"UIDVALIDITY"])
            return int(status[b"UIDVALIDITY"])

    def recreate_folder(self, user: str, folder: str) -> None:
        """Delete and create ``folder`` again: its UIDVALIDITY changes
        (RFC 3501 §2.3.1.1), as after a server migration or a restore."""
        with self.client(user) as client:
            client.delete_folder(folder)
            client.create_folder(folder)

    # ------------------------------------------------------------- life

    def log(self) -> str:
        path = self.folder / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)


def _config(folder: Path, port: int, imaps_port: int, cert: Path | None, extra: str) -> str:
    tls = (
        f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{folder / 'key.pem'}\n"
        if cert is not None
        else "ssl = no\n"
    )
    return f"""\
protocols = imap
listen = 127.0.0.1
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
{tls}disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_fsync = never
{_run_as_lines()}passdb {{
  driver = static
  args = password={PASSWORD}
}}
userdb {{
  driver = static
  args = {_mail_owner()} home={folder}/mail/%u
}}
mail_location = maildir:{folder}/mail/%u
namespace inbox {{
  inbox = yes
}}
protocol imap {{
  mail_max_userip_connections = 1000
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = {imaps_port}
  }}
}}
{extra}
"""


def start_dovecot(
    executable: str, *, tls: bool = False, capabilities: str | None = None
) -> DovecotServer:
    """Start Dovecot in the foreground (``-F``) and wait for its port."""
    folder = Path(tempfile.mkdtemp(prefix="sluice-dovecot-"))
    folder.chmod(0o755)
    (folder / "mail").mkdir(mode=0o1777)
    (folder / "mail").chmod(0o1777)  # mkdir's mode is masked by the umask
    cert = _self_signed_certificate(folder)[0] if tls else None
    port = free_port()
    imaps_port = free_port() if tls else 0
    extra = f"imap_capability = {capabilities}\n" if capabilities else ""
    config = folder / "dovecot.conf"
    config.write_text(_config(folder, port, imaps_port, cert, extra), encoding="ascii")
    process = subprocess.Popen(
        [executable, "-F", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "stderr.log").open("wb"),
    )
    server = DovecotServer(folder, port, imaps_port, process, cert)

    def still_running() -> None:
        if process.poll() is not None:
            output = (folder / "stderr.log").read_text(errors="replace") + server.log()
            raise RuntimeError(f"dovecot exited with {process.returncode}: {output}")

    try:
        wait_until(
            lambda: port_open(port) and (not tls or port_open(imaps_port)),
            what="dovecot listening",
            timeout=30,
            check=still_running,
        )
    except BaseException:
        server.stop()
        raise
    return server
