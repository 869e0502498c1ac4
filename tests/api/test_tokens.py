"""API tokens: high-entropy, shown once, stored only as a SHA-256 hash, revocable; managed
with `feedtag tokens` and through the API by admins."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from feedtag.store.schema import api_tokens
from feedtag.store.tokens import TOKEN_PREFIX, Role, create_token, lookup_token

from .conftest import Setup

FEEDTAG = [sys.executable, "-m", "feedtag.cli"]


def test_tokens_are_random_and_stored_only_hashed(setup: Setup) -> None:
    made = [create_token(setup.store, f"t{i}", Role.VIEWER)[0] for i in range(20)]
    assert len(set(made)) == 20
    assert all(t.startswith(TOKEN_PREFIX) and len(t) >= len(TOKEN_PREFIX) + 43 for t in made)
    with setup.store.connect() as connection:
        rows = connection.execute(select(api_tokens)).all()
    stored = json.dumps([[str(v) for v in row] for row in rows])
    for token in made:
        assert token not in stored
        assert hashlib.sha256(token.encode()).hexdigest() in stored
    database = (setup.data_dir / "feedtag.db").read_bytes()
    assert not any(token.encode() in database for token in made)


def test_a_token_is_found_by_its_hash_only(setup: Setup) -> None:
    token, record = create_token(setup.store, "wall", Role.VIEWER, ["cam-a"])
    assert lookup_token(setup.store, token) == record
    assert lookup_token(setup.store, token[:-1]) is None
    assert lookup_token(setup.store, token + "x") is None


def test_admins_manage_tokens_through_the_api(setup: Setup) -> None:
    made = setup.client.post(
        "/api/v1/tokens", json={"name": "screen", "role": "viewer", "cameras": ["cam-a"]},
        headers=setup.headers("admin"),
    )  # fmt: skip
    assert made.status_code == 201
    token = made.json()["token"]
    token_id = made.json()["token_id"]
    listed = setup.get("admin", "/api/v1/tokens").text
    assert token_id in listed and token not in listed  # shown once
    assert setup.client.get("/api/v1/cameras", headers={"Authorization": f"Bearer {token}"}
                            ).status_code == 200  # fmt: skip
    revoke = setup.client.delete(f"/api/v1/tokens/{token_id}", headers=setup.headers("admin"))
    assert revoke.status_code == 204
    assert setup.client.get("/api/v1/cameras", headers={"Authorization": f"Bearer {token}"}
                            ).status_code == 401  # fmt: skip
    again = setup.client.delete(f"/api/v1/tokens/{token_id}", headers=setup.headers("admin"))
    assert again.status_code == 404


def run_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FEEDTAG_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [*FEEDTAG, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_the_tokens_command(tmp_path: Path) -> None:
    made = run_cli("tokens", "create", "--name", "ops", "--role", "operator",
                   "--camera", "door", "--json", data_dir=tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr
    record = json.loads(made.stdout)
    assert record["role"] == "operator" and record["cameras"] == ["door"]
    assert record["token"].startswith(TOKEN_PREFIX)
    listed = run_cli("tokens", "list", "--json", data_dir=tmp_path)
    assert [r["token_id"] for r in json.loads(listed.stdout)] == [record["token_id"]]
    assert record["token"] not in listed.stdout + listed.stderr
    revoked = run_cli("tokens", "revoke", record["token_id"], data_dir=tmp_path)
    assert revoked.returncode == 0
    assert json.loads(run_cli("tokens", "list", "--json", data_dir=tmp_path).stdout) == []
    missing = run_cli("tokens", "revoke", record["token_id"], data_dir=tmp_path)
    assert missing.returncode == 2


def test_run_refuses_to_serve_without_an_admin_credential(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("detector: {enabled: false}\napi: {enabled: true, port: 0}\n")
    done = run_cli("run", str(config), "--seconds", "1", data_dir=tmp_path)
    assert done.returncode == 2
    assert "api.admin_token" in done.stderr and "admin credential" in done.stderr


def test_the_audit_command(tmp_path: Path) -> None:
    from feedtag.store.audit import AuditEntry, write_audit
    from feedtag.store.engine import create_store_engine
    from feedtag.store.migrations import upgrade

    store = create_store_engine(f"sqlite:///{tmp_path / 'feedtag.db'}")
    upgrade(store)
    write_audit(store, AuditEntry(time.time(), "t1", "wall", "viewer", "events.get", "door",
                                  "e1", None, "10.0.0.9", 200))  # fmt: skip
    store.dispose()
    done = run_cli("audit", "--since", "1h", "--json", data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    [entry] = json.loads(done.stdout)["items"]
    assert (entry["token_name"], entry["action"], entry["client"]) == ("wall", "events.get",
                                                                      "10.0.0.9")  # fmt: skip
    shown = run_cli("audit", "--principal", "nobody", data_dir=tmp_path)
    assert shown.returncode == 0 and "events.get" not in shown.stdout
