"""Typed keys for everything the aiohttp application holds."""

from __future__ import annotations

from aiohttp import web
from jinja2 import Environment
from redis.asyncio import Redis

from kitchencam.accounts import Accounts
from kitchencam.boardfeed import BoardFeed
from kitchencam.compliance.service import Compliance
from kitchencam.httperrors import ErrorPage
from kitchencam.metrics import Metrics
from kitchencam.registry import Registry
from kitchencam.relay.forwarder import Forwarder
from kitchencam.relay.hub import RelayHub
from kitchencam.relay.probe import Prober
from kitchencam.roles import RoleSet
from kitchencam.settings import Settings
from kitchencam.shortcache import ShortCache
from kitchencam.users import Users
from kitchencam.workers import WorkerPool

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
REGISTRY = web.AppKey("registry", Registry)
USERS = web.AppKey("users", Users)
ACCOUNTS = web.AppKey("accounts", Accounts)
PROBER = web.AppKey("prober", Prober)
METRICS = web.AppKey("metrics", Metrics)
ROLES = web.AppKey("roles", RoleSet)
RELAY = web.AppKey("relay", RelayHub)
FORWARDER = web.AppKey("forwarder", Forwarder)
WORKERS = web.AppKey("workers", WorkerPool)
COMPLIANCE = web.AppKey("compliance", Compliance)
TEMPLATES = web.AppKey("templates", Environment)
BOARD_FEED = web.AppKey("board_feed", BoardFeed)
ERROR_PAGE: web.AppKey[ErrorPage] = web.AppKey("error_page")
WATCH_CACHE = web.AppKey("watch_cache", ShortCache)
