"""Project secrets: write-only values, encrypted at rest, resolved for workloads.

Every database test runs on SQLite and on PostgreSQL (the ``world`` fixture).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, update

from corral.db.engine import read_tx
from corral.db.tables import project_secrets, projects
from corral.services import keys as key_service, secrets as secret_service
from corral.services.keys import KeyMismatch, KeyUnusable, SecretKeys
from corral.services.secrets import MissingSecret, SecretUnreadable
from tests.integration.conftest import submit

VALUE = "hf_Zq9-very-secret-value-4711"
URL = "/api/v1/projects/{project}/secrets"


def url(project: str = "vision", name: str | None = None) -> str:
    return URL.format(project=project) + (f"/{name}" if name else "")


def server_keys(world) -> SecretKeys:
    return key_service.for_settings(world.api.client.app.state.settings)


def project_id(world, name: str) -> int:
    with world.api.engine.connect() as conn:
        return conn.execute(select(projects.c.id).where(projects.c.name == name)).scalar_one()


# --------------------------------------------------------------------------- the API

def test_create_replace_list_delete(world):
    assert world.alice.get(url()).json() == []
    created = world.alice.put(url(name="HF_TOKEN"), json={"value": VALUE})
    assert created.status_code == 200, created.text
    body = created.json()
    assert set(body) == {"project", "name", "created_by", "created_at", "updated_at"}
    assert body["project"] == "vision" and body["name"] == "HF_TOKEN" and body["created_by"] == "alice@example.com"
    assert body["created_at"] == body["updated_at"]

    # An admin replaces it: same secret, still created by alice, updated later.
    replaced = world.admin.put(url(name="HF_TOKEN"), json={"value": VALUE + "-2"})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["created_by"] == "alice@example.com"
    assert replaced.json()["created_at"] == body["created_at"]
    assert replaced.json()["updated_at"] >= body["updated_at"]

    assert world.alice.put(url(name="wandb-key"), json={"value": "w"}).status_code == 200
    listed = world.alice.get(url()).json()
    assert [s["name"] for s in listed] == ["HF_TOKEN", "wandb-key"]
    assert all(set(s) == {"project", "name", "created_by", "created_at", "updated_at"} for s in listed)
    with read_tx(world.api.engine) as conn:
        assert secret_service.resolve_for_workload(conn, project_id(world, "vision"), {"HF": "HF_TOKEN"},
                                                   server_keys(world)) == {"HF": VALUE + "-2"}

    assert world.alice.delete(url(name="wandb-key")).status_code == 204
    assert [s["name"] for s in world.alice.get(url()).json()] == ["HF_TOKEN"]
    again = world.alice.delete(url(name="wandb-key"))
    assert again.status_code == 404 and again.json()["error"]["field"] == "name"

    kinds = [(e["kind"], e["message"]) for e in world.alice.get("/api/v1/projects/vision/events").json()
             if e["kind"].startswith("secret_")]
    assert kinds == [  # newest first
        ("secret_deleted", "secret wandb-key deleted from project vision"),
        ("secret_set", "secret wandb-key created in project vision"),
        ("secret_set", "secret HF_TOKEN updated in project vision"),
        ("secret_set", "secret HF_TOKEN created in project vision"),
    ]


def test_the_value_is_never_returned_logged_or_recorded(world, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, SQL included
    responses = [
        world.alice.put(url(name="HF_TOKEN"), json={"value": VALUE}),
        world.alice.put(url(name="HF_TOKEN"), json={"value": VALUE}),
        world.alice.get(url()),
        world.admin.get(url()),
        world.alice.get("/api/v1/projects/vision/events"),
    ]
    created = submit(world.alice, name="uses-secret", secrets={"HF_TOKEN": "HF_TOKEN"})
    assert created.status_code == 201, created.text
    detail = world.alice.get(f"/api/v1/workloads/{created.json()['id']}")
    responses += [created, detail, world.alice.get("/api/v1/workloads?project=vision")]
    with read_tx(world.api.engine) as conn:
        assert secret_service.resolve_for_workload(conn, project_id(world, "vision"), {"HF_TOKEN": "HF_TOKEN"},
                                                   server_keys(world)) == {"HF_TOKEN": VALUE}
    responses.append(world.alice.delete(url(name="HF_TOKEN")))
    responses.append(world.api.client.get("/openapi.json"))
    for response in responses:
        assert response.status_code < 300, response.text
        assert VALUE not in response.text
    assert detail.json()["spec"]["secrets"] == {"HF_TOKEN": "HF_TOKEN"}  # the mapping, not the value
    assert caplog.records and VALUE not in caplog.text
    with world.api.engine.connect() as conn:
        from corral.db.tables import events, workloads

        messages = [m for (m,) in conn.execute(select(events.c.message))]
        specs = [json.dumps(s) for (s,) in conn.execute(select(workloads.c.spec))]
    assert any("HF_TOKEN" in m for m in messages)
    assert not any(VALUE in m for m in messages + specs)


def test_stored_encrypted_with_the_servers_key(world):
    assert world.alice.put(url(name="HF_TOKEN"), json={"value": VALUE}).status_code == 200
    with world.api.engine.connect() as conn:
        row = conn.execute(select(project_secrets.c.project_id, project_secrets.c.ciphertext,
                                  project_secrets.c.created_by)).one()
    assert row.ciphertext != VALUE and VALUE not in row.ciphertext and "hf_" not in row.ciphertext
    assert row.created_by == "alice@example.com"
    # A Fernet token of the server's key (the key file in the data directory, made on first use).
    key_file = Path(world.api.client.app.state.settings.data_dir) / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    plain = json.loads(Fernet(key_file.read_bytes().strip()).decrypt(row.ciphertext.encode()))
    assert plain == {"p": row.project_id, "n": "HF_TOKEN", "v": VALUE}
    # Another key cannot read it.
    with pytest.raises(KeyMismatch):
        SecretKeys([Fernet.generate_key()]).decrypt(row.ciphertext)


def test_a_ciphertext_moved_to_another_project_does_not_decrypt(world):
    assert world.alice.put(url(name="HF_TOKEN"), json={"value": VALUE}).status_code == 200
    assert world.bob.put(url("speech", "HF_TOKEN"), json={"value": "bobs"}).status_code == 200
    vision, speech = project_id(world, "vision"), project_id(world, "speech")
    with world.api.engine.begin() as conn:
        stolen = conn.execute(select(project_secrets.c.ciphertext)
                              .where(project_secrets.c.project_id == vision)).scalar_one()
        conn.execute(update(project_secrets).where(project_secrets.c.project_id == speech)
                     .values(ciphertext=stolen))
    with read_tx(world.api.engine) as conn, pytest.raises(SecretUnreadable) as raised:
        secret_service.resolve_for_workload(conn, speech, {"T": "HF_TOKEN"}, server_keys(world))
    assert VALUE not in str(raised.value) and isinstance(raised.value, LookupError)


def test_members_of_other_projects_and_outsiders_get_404(world):
    assert world.alice.put(url(name="HF_TOKEN"), json={"value": VALUE}).status_code == 200
    for client in (world.bob, world.carol):  # bob: member of speech; carol: of nothing
        for method, path, body in (("GET", url(), None), ("PUT", url(name="HF_TOKEN"), {"value": "x"}),
                                   ("PUT", url(name="NEW"), {"value": "x"}), ("DELETE", url(name="HF_TOKEN"), None)):
            response = client.request(method, path, json=body)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"]["field"] == "project"
    # Nothing changed, and bob's own project is his to use.
    [secret] = world.alice.get(url()).json()
    assert secret["created_at"] == secret["updated_at"]
    assert world.bob.put(url("speech", "HF_TOKEN"), json={"value": "other"}).status_code == 200
    assert [s["project"] for s in world.admin.get(url("speech")).json()] == ["speech"]
    assert world.api.anonymous.get(url()).status_code == 401


@pytest.mark.parametrize(("name", "body", "field"), [
    ("HF_TOKEN", {"value": ""}, "value"),
    ("HF_TOKEN", {"value": "S3CRET-" + "x" * (64 * 1024)}, "value"),  # over 64 KiB
    ("HF_TOKEN", {"value": "S3CRET-" + "é" * (32 * 1024)}, "value"),  # 64 KiB of characters, over in UTF-8
    ("HF_TOKEN", {"value": "S3CRET-\x00-nul"}, "value"),
    ("HF_TOKEN", {"value": ["S3CRET-in-a-list"]}, "value"),
    ("HF_TOKEN", {"value": {"S3CRET": "S3CRET-nested"}}, "value"),
    ("HF_TOKEN", {"value": "ok", "other": "S3CRET-extra"}, "other"),
    ("HF_TOKEN", {"valu": "S3CRET-typo"}, None),
    ("bad name", {"value": "S3CRET-name"}, "name"),
    ("-leading-dash", {"value": "S3CRET-name"}, "name"),
    ("x" * 65, {"value": "S3CRET-name"}, "name"),
])
def test_refused_values_are_never_echoed(world, name, body, field):
    response = world.alice.put(url(name=name), json=body)
    assert response.status_code == 422, response.text
    assert "S3CRET" not in response.text and "S3CRET" not in json.dumps(response.json())
    error = response.json()["error"]
    if field is not None:
        assert error["field"] == field, error
    assert world.alice.get(url()).json() == []


@pytest.mark.parametrize("content", [b'{"value": "S3CRET-unterminated', b'{"value": "S3CRET-\\ud800-surrogate"}'])
def test_malformed_json_and_text_are_not_echoed(world, content):
    response = world.alice.put(url(name="HF_TOKEN"), content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert "S3CRET" not in response.text
    assert world.alice.get(url()).json() == []


def test_a_value_of_64_kib_is_accepted(world):
    value = "é" * (32 * 1024)  # 65,536 bytes of UTF-8
    assert world.alice.put(url(name="BIG"), json={"value": value}).status_code == 200
    with read_tx(world.api.engine) as conn:
        resolved = secret_service.resolve_for_workload(conn, project_id(world, "vision"), {"BIG": "BIG"},
                                                       server_keys(world))
    assert resolved == {"BIG": value}


# --------------------------------------------------------------------------- workloads

def test_a_workload_referencing_a_missing_secret_is_refused(world):
    assert world.alice.put(url(name="hf-token"), json={"value": VALUE}).status_code == 200
    refused = submit(world.alice, name="needs-secret", secrets={"HF_TOKEN": "hf-token", "WANDB_API_KEY": "wandb"})
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["field"] == "secrets.WANDB_API_KEY" and error["code"] == "missing_secret"
    assert "'wandb'" in error["message"] and "vision" in error["message"]
    # A secret of another project does not count.
    assert world.bob.put(url("speech", "wandb"), json={"value": "x"}).status_code == 200
    assert submit(world.alice, name="needs-secret", secrets={"WANDB_API_KEY": "wandb"}).status_code == 422
    several = submit(world.alice, name="needs-secret", secrets={"A": "nope-a", "B": "nope-b"})
    assert [d["field"] for d in several.json()["error"]["details"]] == ["secrets.A", "secrets.B"]
    assert world.alice.get("/api/v1/workloads?project=vision").json()["total"] == 0  # nothing written

    created = submit(world.alice, name="needs-secret", secrets={"HF_TOKEN": "hf-token"})
    assert created.status_code == 201, created.text


def test_resolve_for_workload(world):
    assert world.alice.put(url(name="hf-token"), json={"value": VALUE}).status_code == 200
    assert world.alice.put(url(name="wandb"), json={"value": "w-value"}).status_code == 200
    vision = project_id(world, "vision")
    keys = server_keys(world)
    with read_tx(world.api.engine) as conn:
        assert secret_service.resolve_for_workload(conn, vision, {}, keys) == {}
        resolved = secret_service.resolve_for_workload(
            conn, vision, {"HF_TOKEN": "hf-token", "HUGGING_FACE_HUB_TOKEN": "hf-token", "WANDB_API_KEY": "wandb"},
            keys)
    assert resolved == {"HF_TOKEN": VALUE, "HUGGING_FACE_HUB_TOKEN": VALUE, "WANDB_API_KEY": "w-value"}

    # Deleted after submission: the dispatch gets an error naming the secret and the variable.
    assert world.alice.delete(url(name="wandb")).status_code == 204
    with read_tx(world.api.engine) as conn, pytest.raises(MissingSecret) as raised:
        secret_service.resolve_for_workload(conn, vision, {"HF_TOKEN": "hf-token", "WANDB_API_KEY": "wandb"}, keys)
    assert raised.value.secret == "wandb" and raised.value.env == "WANDB_API_KEY"
    assert raised.value.field == "secrets.WANDB_API_KEY" and "'wandb'" in raised.value.message
    assert isinstance(raised.value, secret_service.SecretError) and isinstance(raised.value, LookupError)


def test_deleting_a_project_deletes_its_secrets(world):
    assert world.admin.post("/api/v1/projects", json={"name": "scratch"}).status_code == 201
    assert world.admin.put(url("scratch", "T"), json={"value": "x"}).status_code == 200
    assert world.admin.delete("/api/v1/projects/scratch").status_code == 204
    with world.api.engine.connect() as conn:
        assert conn.execute(select(project_secrets.c.name)).all() == []


# --------------------------------------------------------------------------- the key

@pytest.fixture(autouse=True)
def _fresh_key_cache():
    key_service._cache.clear()
    yield
    key_service._cache.clear()


def test_key_file_is_created_owner_only_and_reused(tmp_path):
    data_dir = tmp_path / "data"
    first = key_service.load(None, data_dir)
    key_file = data_dir / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    content = key_file.read_bytes()
    token = first.encrypt(b"hello")
    assert repr(first) == "SecretKeys(<1 key>)" and content.strip().decode() not in repr(first)

    key_service._cache.clear()  # a new process
    second = key_service.load(None, data_dir)
    assert second is not first and second.decrypt(token) == b"hello"
    assert key_file.read_bytes() == content
    assert [p.name for p in data_dir.iterdir()] == ["secret.key"]  # no temporary file left


def test_processes_starting_together_agree_on_one_key(tmp_path):
    path = tmp_path / "secret.key"
    keys: list[bytes] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        keys.append(key_service.load_or_create_key_file(path))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1
    assert sorted(os.listdir(tmp_path)) == ["secret.key"]


def test_configured_keys_rotate_newest_first(tmp_path):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    before = key_service.load(old, tmp_path).encrypt(b"v")
    rotated = key_service.load(f"{new}, {old}", tmp_path)
    assert rotated.count == 2 and rotated.decrypt(before) == b"v"
    after = rotated.encrypt(b"v")
    assert key_service.load(new, tmp_path).decrypt(after) == b"v"  # encrypted with the first key
    with pytest.raises(KeyMismatch):
        key_service.load(old, tmp_path).decrypt(after)
    assert key_service.load(new, tmp_path).decrypt(rotated.rotate(before)) == b"v"
    assert not (tmp_path / "secret.key").exists()  # a configured key makes no file


def test_a_bad_configured_key_is_refused_without_showing_it(tmp_path):
    good = Fernet.generate_key().decode()
    for configured in ("not-a-key", f"{good},also-not-a-key", " , "):
        if not configured.strip(" ,"):
            with pytest.raises(KeyUnusable):
                key_service.parse_keys(configured)
            continue
        with pytest.raises(KeyUnusable) as raised:
            key_service.load(configured, tmp_path)
        assert "not-a-key" not in raised.value.message and good not in raised.value.message
        assert "CORRAL_SECRET_KEY" in raised.value.message
    empty = tmp_path / "d"
    empty.mkdir()
    (empty / "secret.key").write_bytes(b"")
    with pytest.raises(KeyUnusable):
        key_service.load(None, empty)


def test_the_server_uses_corral_secret_key_when_set(engine, tmp_path):
    from fastapi.testclient import TestClient

    from corral.api.app import create_app
    from corral.db.engine import write_tx
    from corral.services import users as user_service
    from corral.services.principal import SYSTEM
    from corral.settings import Settings

    key = Fernet.generate_key().decode()
    settings = Settings(data_dir=tmp_path, database_url=str(engine.url), bootstrap=False, secret_key=key)
    assert key not in repr(settings) and key not in str(settings.model_dump())
    with write_tx(engine) as conn:
        user = user_service.create_user(conn, email="root@example.com", display_name=None, role="admin",
                                        actor=SYSTEM)
        token, _ = user_service.create_token(conn, user_id=user["id"], name="t", expires_at=None, actor=SYSTEM)
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(settings, engine)) as client:
        assert client.post("/api/v1/projects", json={"name": "keyed"}, headers=headers).status_code == 201
        assert client.put(url("keyed", "T"), json={"value": VALUE}, headers=headers).status_code == 200
    with engine.connect() as conn:
        ciphertext = conn.execute(select(project_secrets.c.ciphertext)).scalar_one()
    assert json.loads(Fernet(key).decrypt(ciphertext.encode()))["v"] == VALUE
    assert not (tmp_path / "secret.key").exists()


def test_reencrypt_moves_every_secret_to_the_newest_key(world, tmp_path):
    from typer.testing import CliRunner

    from corral.cli.main import app

    assert world.alice.put(url(name="HF_TOKEN"), json={"value": VALUE}).status_code == 200
    assert world.bob.put(url("speech", "other"), json={"value": "bobs"}).status_code == 200
    data_dir = Path(world.api.client.app.state.settings.data_dir)
    old = (data_dir / "secret.key").read_text().strip()
    new = Fernet.generate_key().decode()
    database_url = world.api.engine.url.render_as_string(hide_password=False)

    def reencrypt(secret_key: str) -> object:
        key_service._cache.clear()
        env = {"CORRAL_DATABASE_URL": database_url, "CORRAL_DATA_DIR": str(data_dir),
               "CORRAL_SECRET_KEY": secret_key, "NO_COLOR": "1"}
        return CliRunner().invoke(app, ["secrets", "reencrypt"], env=env, catch_exceptions=False)

    # With a key that reads nothing: refused, naming the secret, changing nothing.
    refused = reencrypt(Fernet.generate_key().decode())
    assert refused.exit_code == 1 and "cannot decrypt" in refused.stderr and VALUE not in refused.output
    done = reencrypt(f"{new},{old}")
    assert done.exit_code == 0, done.output
    assert "Re-encrypted 2 secrets" in done.stdout
    with read_tx(world.api.engine) as conn:
        assert secret_service.resolve_for_workload(conn, project_id(world, "vision"), {"T": "HF_TOKEN"},
                                                   SecretKeys([new])) == {"T": VALUE}
        assert secret_service.resolve_for_workload(conn, project_id(world, "speech"), {"T": "other"},
                                                   SecretKeys([new])) == {"T": "bobs"}
        with pytest.raises(SecretUnreadable):
            secret_service.resolve_for_workload(conn, project_id(world, "vision"), {"T": "HF_TOKEN"},
                                                SecretKeys([old]))
