"""Operations: the deployment files say what docs/operations.md promises.

Cheap, static checks of deploy/systemd, deploy/coturn, deploy/nginx and deploy/compose:
the hardening and safety lines that are easy to lose in an edit. (deploy/prometheus and
deploy/grafana are checked against a real Prometheus in test_ops_prometheus.py.)
"""

from __future__ import annotations

import re
import shutil
import subprocess

from tests.support.server import ROOT

DEPLOY = ROOT / "deploy"


def active_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_systemd_unit_is_hardened() -> None:
    unit = DEPLOY / "systemd" / "visitbridge.service"
    lines = active_lines(unit.read_text())
    for required in ("ProtectSystem=strict", "ReadWritePaths=/var/lib/visitbridge",
                     "NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectHome=yes",
                     "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
                     "CapabilityBoundingSet=", "SystemCallFilter=@system-service"):
        assert required in lines, required
    assert "User=visitbridge" in lines or "DynamicUser=yes" in lines
    # Both break the server (see the comments in the unit and docs/operations.md):
    # W+X memory for cffi callbacks (DTLS), and /proc/stat for the process metrics.
    assert not any(line.startswith("MemoryDenyWriteExecute=") for line in lines)
    assert not any(line.startswith("ProcSubset=") for line in lines)
    analyze = shutil.which("systemd-analyze")
    if analyze:
        done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                              timeout=60)
        problems = [line for line in (done.stdout + done.stderr).splitlines()
                    if line.strip() and "/opt/visitbridge/.venv/bin/visitbridge" not in line]
        assert not problems, problems


def test_coturn_config_needs_a_secret_and_refuses_private_peers() -> None:
    lines = active_lines((DEPLOY / "coturn" / "turnserver.conf").read_text())
    for required in ("use-auth-secret", "no-cli", "fingerprint", "no-multicast-peers"):
        assert required in lines, required
    assert any(line.startswith("realm=") for line in lines)
    assert any(line.startswith("static-auth-secret=CHANGE") for line in lines)  # placeholder
    assert "allow-loopback-peers" not in lines
    denied = {line.split("=", 1)[1] for line in lines if line.startswith("denied-peer-ip=")}
    for private in ("10.0.0.0-10.255.255.255", "172.16.0.0-172.31.255.255",
                    "192.168.0.0-192.168.255.255", "127.0.0.0-127.255.255.255",
                    "169.254.0.0-169.254.255.255",
                    "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"):
        assert private in denied, private
    assert any(line.startswith("min-port=") for line in lines)
    assert any(line.startswith("max-port=") for line in lines)


def test_nginx_proxies_the_websocket_and_hides_metrics() -> None:
    text = (DEPLOY / "nginx" / "visitbridge.conf").read_text()
    ws = re.search(r"location = /ws \{(.*?)\}", text, re.S)
    assert ws, "no location for /ws"
    assert "proxy_set_header Upgrade $http_upgrade;" in ws.group(1)
    assert "proxy_set_header Connection $connection_upgrade;" in ws.group(1)
    assert re.search(r"location = /metrics \{\s*deny all;", text)
    assert "ssl_certificate " in text and "TLSv1.2 TLSv1.3" in text
    assert "fragment" in text  # the comment explaining why access logs do not hold tokens
    assert "$http_authorization" not in "\n".join(active_lines(text))


def test_compose_mounts_the_provisioning_and_the_rules() -> None:
    text = (DEPLOY / "compose" / "docker-compose.yml").read_text()
    for service in ("visitbridge:", "coturn:", "prometheus:", "grafana:"):
        assert re.search(rf"^  {service}", text, re.M), service
    assert "../prometheus:/etc/prometheus:ro" in text
    assert "../grafana/provisioning/datasources:/etc/grafana/provisioning/datasources" in text
    assert "../grafana/provisioning/dashboards:/etc/grafana/provisioning/dashboards" in text
    assert "../grafana/visitbridge.json:/var/lib/grafana/dashboards/visitbridge/" in text
    provider = (DEPLOY / "grafana" / "provisioning" / "dashboards" / "visitbridge.yml")
    assert "path: /var/lib/grafana/dashboards/visitbridge" in provider.read_text()
    datasource = (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    assert "uid: prometheus" in datasource.read_text()
