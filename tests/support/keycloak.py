"""A real Keycloak for tests: the official distribution from Maven Central, started in dev mode.

The zip is fetched once per machine into the exchange cache (like the Kafka jars) and copied
per session, because ``start-dev`` rewrites its own ``lib/quarkus`` and keeps its database
under the distribution: sessions running side by side must not share one. The realm is
``deploy/keycloak/realm-exchange.json``, the file ``compose.yaml`` imports too.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx

from exchange.kafka.broker import free_port
from exchange.kafka.jars import cache_root

KEYCLOAK_VERSION = "26.5.6"
REALM = "exchange"
REALM_FILE = Path(__file__).resolve().parents[2] / "deploy" / "keycloak" / "realm-exchange.json"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>exchange.local</groupId><artifactId>keycloak-dist</artifactId>
  <version>1</version><packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.keycloak</groupId><artifactId>keycloak-quarkus-dist</artifactId>
      <version>{version}</version><type>zip</type></dependency>
  </dependencies>
</project>
"""


def dist_dir(version: str = KEYCLOAK_VERSION) -> Path:
    return cache_root() / f"keycloak-{version}" / f"keycloak-{version}"


def ensure_dist(version: str = KEYCLOAK_VERSION) -> Path:
    """The unpacked distribution, fetched with Maven and unzipped once per machine."""
    target = dist_dir(version)
    if (target.parent / ".complete").exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven (mvn) is not installed: cannot fetch Keycloak")
    staging = target.parent.with_name(f"keycloak-{version}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        pom = Path(tmp) / "pom.xml"
        pom.write_text(_POM.format(version=version))
        cmd = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies"]
        proc = subprocess.run(
            [*cmd, f"-DoutputDirectory={tmp}/out", "-DexcludeTransitive=true"],
            capture_output=True,
            text=True,
            check=False,
        )
        zips = list(Path(tmp, "out").glob("keycloak-quarkus-dist-*.zip"))
        if proc.returncode != 0 or not zips:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            raise RuntimeError("fetching Keycloak with Maven failed: " + " | ".join(tail))
        with zipfile.ZipFile(zips[0]) as z:
            z.extractall(staging)
    (staging / f"keycloak-{version}" / "bin" / "kc.sh").chmod(0o755)
    (staging / ".complete").write_text(version)
    shutil.rmtree(target.parent, ignore_errors=True)
    staging.rename(target.parent)
    return target


def dev_build_dir(version: str = KEYCLOAK_VERSION) -> Path:
    return dist_dir(version).parent / "dev-build"


def keep_dev_build(quarkus: Path, version: str) -> None:
    """Cache what ``start-dev`` augmented, once; sessions racing here leave one copy."""
    target = dev_build_dir(version)
    if target.exists():
        return
    staging = target.with_name(f"dev-build.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(quarkus, staging)
    (staging / ".complete").write_text(version)
    try:
        staging.rename(target)
    except OSError:  # another session was first
        shutil.rmtree(staging, ignore_errors=True)


class Keycloak:
    """One ``kc.sh start-dev`` on free loopback ports, its admin password made up per run."""

    def __init__(self, workdir: Path, version: str = KEYCLOAK_VERSION) -> None:
        self.workdir = workdir
        self.version = version
        self.port = free_port()
        self.management_port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.issuer = f"{self.base}/realms/{REALM}"
        self.admin_user = "admin"
        self._admin_password = secrets.token_urlsafe(24)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "keycloak.log"

    def start(self, timeout: float = 180.0) -> Keycloak:
        home = self.workdir / "dist"
        dist = ensure_dist(self.version)
        shutil.copytree(dist, home, symlinks=True)
        built = dev_build_dir(self.version)
        if (built / ".complete").exists():  # skip start-dev's ~20 s re-augmentation
            shutil.rmtree(home / "lib" / "quarkus")
            shutil.copytree(built, home / "lib" / "quarkus", ignore=shutil.ignore_patterns(".*"))
        (home / "data" / "import").mkdir(parents=True)
        shutil.copy(REALM_FILE, home / "data" / "import" / REALM_FILE.name)
        env = {
            **os.environ,
            "KC_BOOTSTRAP_ADMIN_USERNAME": self.admin_user,
            "KC_BOOTSTRAP_ADMIN_PASSWORD": self._admin_password,
        }
        args = [
            str(home / "bin" / "kc.sh"),
            "start-dev",
            "--import-realm",
            "--http-host=127.0.0.1",
            f"--http-port={self.port}",
            f"--http-management-port={self.management_port}",
            "--cache=local",  # no cluster: no JGroups ports
        ]
        with self.log.open("ab") as out:
            # Own session, so stop() reaches the JVM that kc.sh starts as well.
            self.proc = subprocess.Popen(
                args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_ready(timeout)
        keep_dev_build(home / "lib" / "quarkus", self.version)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"{self.issuer}/.well-known/openid-configuration"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"Keycloak exited with {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"Keycloak not ready after {timeout:.0f}s; see {self.log}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM to Keycloak's process group, then SIGKILL if it lingers."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.workdir / "dist" / "lib", ignore_errors=True)  # data and log stay

    # -- tokens --------------------------------------------------------------------------
    def token_endpoint(self, realm: str = REALM) -> str:
        return f"{self.base}/realms/{realm}/protocol/openid-connect/token"

    def grant(self, client_id: str, secret: str, **form: str) -> httpx.Response:
        """A token request as a client of the realm (client_credentials unless told)."""
        data = {"grant_type": "client_credentials", **form}
        return httpx.post(self.token_endpoint(), data=data, auth=(client_id, secret), timeout=10)

    def admin(self) -> KeycloakAdmin:
        r = httpx.post(
            self.token_endpoint("master"),
            data={
                "grant_type": "password",
                "client_id": "admin-cli",
                "username": self.admin_user,
                "password": self._admin_password,
            },
            timeout=10,
        )
        r.raise_for_status()
        return KeycloakAdmin(f"{self.base}/admin/realms/{REALM}", r.json()["access_token"])


class KeycloakAdmin:
    """The few admin REST calls the tests make (the admin token lives 60 s: get a new one)."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    def call(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, path, **kw)
        r.raise_for_status()
        return r.json() if r.content else None

    def client_uuid(self, client_id: str) -> str:
        return str(self.call("GET", "/clients", params={"clientId": client_id})[0]["id"])

    def client_secret(self, client_id: str) -> str:
        return str(
            self.call("GET", f"/clients/{self.client_uuid(client_id)}/client-secret")["value"]
        )

    def user_id(self, username: str) -> str:
        found = self.call("GET", "/users", params={"username": username, "exact": "true"})
        return str(found[0]["id"])

    def service_account_id(self, client_id: str) -> str:
        return str(
            self.call("GET", f"/clients/{self.client_uuid(client_id)}/service-account-user")["id"]
        )

    def set_password(self, username: str, password: str) -> None:
        body = {"type": "password", "value": password, "temporary": False}
        self.call("PUT", f"/users/{self.user_id(username)}/reset-password", json=body)

    def set_enabled(self, username: str, enabled: bool) -> None:
        self.call("PUT", f"/users/{self.user_id(username)}", json={"enabled": enabled})

    def realm_roles(self, user_id: str, names: list[str], *, add: bool) -> None:
        roles = [self.call("GET", f"/roles/{name}") for name in names]
        method = "POST" if add else "DELETE"
        self.call(method, f"/users/{user_id}/role-mappings/realm", json=roles)

    def key_providers(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.call(
            "GET", "/components", params={"type": "org.keycloak.keys.KeyProvider"}
        )
        return found

    def add_rsa_key(self, name: str, priority: int) -> None:
        realm_id = self.call("GET", "")["id"]
        body = {
            "name": name,
            "providerId": "rsa-generated",
            "providerType": "org.keycloak.keys.KeyProvider",
            "parentId": realm_id,
            "config": {
                "priority": [str(priority)],
                "enabled": ["true"],
                "active": ["true"],
                "keySize": ["2048"],
                "algorithm": ["RS256"],
            },
        }
        self.call("POST", "/components", json=body)

    def remove_key_provider(self, name: str) -> None:
        for c in self.key_providers():
            if c["name"] == name:
                self.call("DELETE", f"/components/{c['id']}")

    def close(self) -> None:
        self.http.close()
