"""A real RFC 3161 time-stamp authority on loopback: ``openssl ts -reply`` behind HTTP.

The CA and the TSA certificate (critical extendedKeyUsage timeStamping) are made by
openssl in the test's own folder, so tokens are signed exactly as a public authority
signs them and the server verifies them with the real library. ``stop`` and ``start``
on the same port let a test take the authority down and bring it back.
"""

from __future__ import annotations

import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support.binaries import need_binary
from tests.support.process import free_port

TSA_CONFIG = """\
[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256

[ tsa_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = critical, timeStamping
"""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([need_binary("openssl"), *args], cwd=cwd, check=True,
                   capture_output=True, timeout=60)


def make_authority(folder: Path) -> Path:
    """Create a CA and a TSA certificate signed by it in ``folder``; returns the CA PEM."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "openssl.cnf").write_text(TSA_CONFIG.format(dir=folder))
    (folder / "serial").write_text("01\n")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=Visitbridge Test TSA Root", cwd=folder)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "tsa.key", "-out", "tsa.csr", "-subj", "/CN=Visitbridge Test TSA",
             cwd=folder)
    _openssl("x509", "-req", "-in", "tsa.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "tsa.pem", "-days", "2",
             "-extfile", "openssl.cnf", "-extensions", "tsa_ext", cwd=folder)
    return folder / "ca.pem"


class Authority:
    """The HTTP side: POST a DER TimeStampReq, get the DER TimeStampResp openssl made."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.ca = make_authority(folder)
        self.port = port or free_port()
        self.requests = 0
        self._http: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/tsa"

    def reply(self, query: bytes) -> bytes:
        work = self.folder / f"q-{uuid.uuid4().hex}"
        (work.with_suffix(".tsq")).write_bytes(query)
        try:
            _openssl("ts", "-reply", "-config", "openssl.cnf", "-queryfile",
                     str(work.with_suffix(".tsq")), "-out", str(work.with_suffix(".tsr")),
                     cwd=self.folder)
            return work.with_suffix(".tsr").read_bytes()
        finally:
            work.with_suffix(".tsq").unlink(missing_ok=True)
            work.with_suffix(".tsr").unlink(missing_ok=True)

    def start(self) -> Authority:
        authority = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                query = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                authority.requests += 1
                try:
                    body, status = authority.reply(query), 200
                except subprocess.CalledProcessError:
                    body, status = b"", 400
                self.send_response(status)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
