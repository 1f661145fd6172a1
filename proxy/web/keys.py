"""Typed application keys: everything with a lifetime lives on the app, created in cleanup contexts."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from proxy.hfmeta import HfMetadata
from proxy.metrics import Metrics
from proxy.pipeline import Pipeline
from proxy.policy_state import PolicyState
from proxy.settings import Settings
from proxy.store import BlobStore
from proxy.upstreams.hf import HfUpstream
from proxy.verdicts import VerdictStore

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
POLICY = web.AppKey("policy", PolicyState)
STORE = web.AppKey("store", VerdictStore)
BLOBS = web.AppKey("blobs", BlobStore)
SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM: web.AppKey[HfUpstream | None] = web.AppKey("upstream")
META = web.AppKey("meta", HfMetadata)
PIPELINE = web.AppKey("pipeline", Pipeline)
