"""Campaign metadata in the store: campaigns/ID/{campaign.json, status.json, cancel, driver.log}."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from farm import store
from farm.errors import FarmError


def root() -> str:
    return store.join(store.home(), "campaigns")


def url(campaign_id: str, name: str = "") -> str:
    return store.join(root(), campaign_id, name) if name else store.join(root(), campaign_id)


def new_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"


def save(campaign: dict[str, Any]) -> None:
    store.write_text(url(campaign["id"], "campaign.json"), json.dumps(campaign, indent=2))


def load(campaign_id: str) -> dict[str, Any]:
    if not store.exists(url(campaign_id, "campaign.json")):
        known = ", ".join(list_ids()[-5:]) or "none yet"
        raise FarmError(f"campaign {campaign_id!r} not found under {root()} (recent: {known})")
    return json.loads(store.read_text(url(campaign_id, "campaign.json")))


def list_ids() -> list[str]:
    return [n for n in store.listdir(root()) if not n.startswith(".")]


def write_status(campaign_id: str, status: dict[str, Any]) -> None:
    store.write_text(
        url(campaign_id, "status.json"), json.dumps({**status, "updated": time.time()})
    )


def read_status(campaign_id: str) -> dict[str, Any]:
    status_url = url(campaign_id, "status.json")
    return (
        json.loads(store.read_text(status_url))
        if store.exists(status_url)
        else {"state": "submitted"}
    )


def request_cancel(campaign_id: str) -> None:
    load(campaign_id)
    store.write_text(url(campaign_id, "cancel"), str(time.time()))


def cancel_requested(campaign_id: str) -> bool:
    return store.exists(url(campaign_id, "cancel"))


def clear_cancel(campaign_id: str) -> None:
    fs, path = store.filesystem(url(campaign_id, "cancel"))
    if fs.exists(path):
        fs.rm_file(path)
