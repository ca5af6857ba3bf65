"""Real mail servers as test peers: a private Postfix instance on loopback (the
remote MX that receives, rejects or defers) and a dnsmasq serving the MX and
address records that point at it. Both run from a temporary directory and are
stopped by the fixture that made them."""
import os
import pwd
import grp
import shutil
import subprocess
import time

from floe_harness import free_port


def _run_tty(cmd):
    # Postfix reports start-up errors only to syslog or a terminal.
    return subprocess.run(["script", "-qec", " ".join(cmd), "/dev/null"], capture_output=True,
                          text=True, timeout=60)


class Postfix:
    """Postfix accepting mail for `domains` into one Maildir. Recipients
    reject@ and defer@ the first domain get 550 5.1.1 and 450 4.2.0. With cert/key,
    STARTTLS is offered."""

    def __init__(self, root, domains=("remote.test",), cert=None, key=None, port=None):
        # Postfix's daemons run as the postfix user and must reach the
        # directory: pytest's own temporary tree is private to root.
        import pathlib
        import tempfile
        root = pathlib.Path(tempfile.mkdtemp(prefix="floe-postfix-"))
        os.chmod(root, 0o755)
        self.root = root
        domain = domains[0]
        self.domain = domain
        self.port = port or free_port()
        self.maildir = root / "mail" / "inbox"
        etc, queue, data = root / "etc", root / "queue", root / "data"
        for d in (etc, queue, data, root / "mail"):
            d.mkdir(parents=True, exist_ok=True)
        uid = pwd.getpwnam("postfix").pw_uid
        gid = grp.getgrnam("postfix").gr_gid
        os.chown(data, uid, gid)
        os.chown(root / "mail", uid, gid)
        master = open("/usr/share/postfix/master.cf.dist").read().splitlines()
        out = []
        for line in master:
            f = line.split()
            if len(f) >= 8 and not line.startswith("#") and f[1] in ("inet", "unix", "unix-dgram",
                                                                     "fifo", "pass"):
                if f[0] == "smtp" and f[1] == "inet":
                    f[0] = f"127.0.0.1:{self.port}"
                f[4] = "n"   # no chroot
                line = " ".join(f)
            out.append(line)
        (etc / "master.cf").write_text("\n".join(out) + "\n")
        tls = ""
        if cert:
            tls = (f"smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n"
                   "smtpd_tls_security_level = may\n")
        (etc / "main.cf").write_text(f"""compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = mx.{domain}
mydestination =
mynetworks = 127.0.0.0/8
maillog_file_prefixes = /tmp, {root}
maillog_file = {root}/maillog
virtual_mailbox_domains = {', '.join(domains)}
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
smtpd_recipient_restrictions = check_recipient_access inline:{{ {{reject@{domain} = 550 5.1.1 no such user here}}, {{defer@{domain} = 450 4.2.0 try again later}} }}, permit_mynetworks, reject
alias_maps =
alias_database =
biff = no
{tls}""")
        self.etc = etc

    def start(self):
        r = _run_tty(["postfix", "-c", str(self.etc), "start"])
        assert "fatal" not in r.stdout, r.stdout
        deadline = time.time() + 20
        import socket
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError("postfix did not start: " + self.log())

    def stop(self):
        _run_tty(["postfix", "-c", str(self.etc), "stop"])
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self):
        p = self.root / "maillog"
        return p.read_text() if p.exists() else ""

    def messages(self):
        """The bytes of every message delivered so far."""
        out = []
        for sub in ("new", "cur"):
            d = self.maildir / sub
            if d.exists():
                out += [p.read_bytes() for p in sorted(d.iterdir())]
        return out

    def wait_messages(self, n, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = self.messages()
            if len(m) >= n:
                return m
            time.sleep(0.2)
        raise AssertionError(f"expected {n} messages at the peer, got {len(self.messages())}\n"
                             + self.log()[-3000:])


class Dnsmasq:
    """An authoritative-looking resolver for test domains: mx=[(domain, host, pref)],
    hosts=[(name, address)]. Everything else under .test is NXDOMAIN."""

    def __init__(self, root, mx=(), hosts=(), port=None):
        self.port = port or free_port()
        args = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-daemon",
                f"--port={self.port}", "--listen-address=127.0.0.1", "--bind-interfaces",
                "--local=/test/", f"--pid-file={root}/dnsmasq.pid", "--user=root"]
        for domain, host, pref in mx:
            args.append(f"--mx-host={domain},{host},{pref}")
        for name, addr in hosts:
            args.append(f"--host-record={name},{addr}")
        self.args = args
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.3)
        assert self.proc.poll() is None, self.proc.stderr.read().decode()
        return self

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    @property
    def servers(self):
        return f"127.0.0.1:{self.port}"
