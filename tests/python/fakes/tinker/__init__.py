"""Fake of the public tinker SDK (https://github.com/thinking-machines-lab/tinker):
only the shapes sail_tinker's drop-in tests use. The REST client talks to a
Tinker REST endpoint for real (TINKER_BASE_URL, X-API-Key: TINKER_API_KEY),
with the routes of Tinker's SDK (set TTL: PUT .../ttl; archive URL: GET
.../archive, a 302 with Location or a JSON {url, expires})."""
from __future__ import annotations

import asyncio
import datetime
import email.utils
import json
import os
import urllib.error
import urllib.request
from typing import Literal

from . import types
from .types import CheckpointArchiveUrlResponse, ModelInput

__all__ = ["ServiceClient", "RestClient", "ModelInput", "StopReason", "types"]

StopReason = Literal["length", "stop"]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _checkpoint_route(tinker_path: str) -> str:
    run, kind, name = tinker_path.removeprefix("tinker://").split("/")
    return f"/api/v1/training_runs/{run}/checkpoints/{kind}/{name}"


class RestClient:
    def __init__(self, base_url: str, api_key: str) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._opener = urllib.request.build_opener(_NoRedirect)

    def _call(self, method: str, route: str, body: dict | None = None):
        req = urllib.request.Request(self._base_url + route, method=method,
                                     data=None if body is None else json.dumps(body).encode())
        req.add_header("X-API-Key", self._api_key)
        req.add_header("Accept", "application/json")
        if body is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(req, timeout=30) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            if e.code == 302:
                return e.code, dict(e.headers), e.read()
            raise

    def set_checkpoint_ttl_from_tinker_path(self, tinker_path: str, ttl_seconds: int | None):
        self._call("PUT", _checkpoint_route(tinker_path) + "/ttl", {"ttl_seconds": ttl_seconds})

    def get_checkpoint_archive_url_from_tinker_path(self, tinker_path: str):
        status, headers, body = self._call("GET", _checkpoint_route(tinker_path) + "/archive")
        if status == 302:
            expires = email.utils.parsedate_to_datetime(headers["Expires"])
            return CheckpointArchiveUrlResponse(url=headers["Location"], expires=expires)
        doc = json.loads(body)
        return CheckpointArchiveUrlResponse(
            url=doc["url"], expires=datetime.datetime.fromisoformat(doc["expires"]))

    async def set_checkpoint_ttl_from_tinker_path_async(self, tinker_path: str,
                                                        ttl_seconds: int | None):
        await asyncio.to_thread(self.set_checkpoint_ttl_from_tinker_path, tinker_path,
                                ttl_seconds)

    async def get_checkpoint_archive_url_from_tinker_path_async(self, tinker_path: str):
        return await asyncio.to_thread(self.get_checkpoint_archive_url_from_tinker_path,
                                       tinker_path)


class ServiceClient:
    def __init__(self, base_url: str | None = None, api_key: str | None = None) -> None:
        self._base_url = base_url or os.environ["TINKER_BASE_URL"]
        self._api_key = api_key or os.environ["TINKER_API_KEY"]

    def create_rest_client(self) -> RestClient:
        return RestClient(self._base_url, self._api_key)
