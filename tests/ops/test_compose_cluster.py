"""Operations: the compose files build an image that holds the whole server, and the
two-node cluster file configures its nodes as docs/scaling.md requires.

Static checks (no container runtime needed): every setting a compose file passes is one
the server reads, each node has its own id, port and relay address on the same Redis
and PostgreSQL, and every secret the file insists on is in its example environment.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib

from app.config import Config
from tests.support.server import ROOT

COMPOSE = ROOT / "deploy" / "compose"
CLUSTER = COMPOSE / "cluster.yml"


def service(text: str, name: str) -> str:
    """The lines of one top-level service of a compose file."""
    found = re.search(rf"^  {re.escape(name)}:\n(.*?)(?=^  \S|^\S|\Z)", text, re.M | re.S)
    assert found, f"no service {name}"
    return found.group(1)


def setting(block: str, key: str) -> str:
    found = re.search(rf"^\s+VISITBRIDGE_{key}: \"?([^\"\n]*)\"?$", block, re.M)
    assert found, f"VISITBRIDGE_{key} not set"
    return found.group(1)


def test_the_image_installs_every_package_of_the_server() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]
    copied = set(re.findall(r"^COPY (\S+) \1$", (COMPOSE / "Dockerfile").read_text(), re.M))
    assert set(packages) <= copied, set(packages) - copied


def test_compose_files_pass_only_settings_the_server_reads() -> None:
    keys = {f.name.upper() for f in dataclasses.fields(Config)}
    for path in (COMPOSE / "docker-compose.yml", CLUSTER):
        used = set(re.findall(r"^\s+VISITBRIDGE_([A-Z0-9_]+):", path.read_text(), re.M))
        assert used and used <= keys, (path.name, used - keys)


def test_two_nodes_share_redis_and_postgresql_each_with_its_own_identity() -> None:
    text = CLUSTER.read_text()
    for name in ("redis", "postgres", "coturn"):
        service(text, name)
    shared = re.search(r"^x-node-environment: &node-environment\n(.*?)^\S", text, re.M | re.S)
    assert shared, "no shared node environment"
    assert setting(shared.group(1), "REDIS_URL").startswith("redis://")
    assert setting(shared.group(1), "DATABASE_URL").startswith("postgresql://")
    nodes = [service(text, name) for name in ("node-a", "node-b")]
    identities = set()
    for block in nodes:
        assert "<<: *node\n" in block and "<<: *node-environment" in block
        port, node_id = setting(block, "PORT"), setting(block, "NODE_ID")
        # Relayed joins go to NODE_URL: the default (the public URL) would send them to
        # the load balancer, which may pick the relaying node again.
        assert setting(block, "NODE_URL").endswith(f":{port}")
        data = re.search(r"- (\S+):/var/lib/visitbridge$", block, re.M)
        assert data, "no data volume"
        identities.add((port, node_id, data.group(1)))
    assert len({i[0] for i in identities}) == len({i[1] for i in identities}) == len(
        {i[2] for i in identities}) == 2, identities


def test_every_required_variable_is_in_the_example_environment() -> None:
    required = set(re.findall(r"\$\{([A-Z_]+):\?", CLUSTER.read_text()))
    example = {line.split("=", 1)[0]
               for line in (COMPOSE / "cluster.env.example").read_text().splitlines()
               if "=" in line and not line.startswith("#")}
    assert required and required <= example, required - example
