"""app.json (the Heroku Button's manifest) and the Procfile say what the README's Heroku section
says: Postgres and Key-Value Store add-ons, a generated secret, one web dyno, the release phase."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_app_json() -> None:
    manifest = json.loads((ROOT / "app.json").read_text())
    plans = [addon["plan"] for addon in manifest["addons"]]
    assert {plan.split(":")[0] for plan in plans} == {"heroku-postgresql", "heroku-redis"}, plans
    assert manifest["env"]["SOCKETSVC_SECRET"]["generator"] == "secret"
    assert manifest["formation"] == {"web": {"quantity": 1}}
    assert "http-session-affinity" in manifest["description"]
    print(f"\napp.json: addons {plans}, formation {manifest['formation']}")


def test_procfile_has_release_and_web() -> None:
    lines = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line
    )
    assert lines["release"].strip() == "socketsvc migrate"
    assert lines["web"].strip() == "socketsvc serve --host 0.0.0.0 --port $PORT"
