"""Typed keys for everything the aiohttp application holds."""

from __future__ import annotations

from aiohttp import web
from jinja2 import Environment
from redis.asyncio import Redis

from kitchencam.compliance.service import Compliance
from kitchencam.metrics import Metrics
from kitchencam.registry import Registry
from kitchencam.relay.hub import RelayHub
from kitchencam.roles import RoleSet
from kitchencam.settings import Settings
from kitchencam.users import Users

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
REGISTRY = web.AppKey("registry", Registry)
USERS = web.AppKey("users", Users)
METRICS = web.AppKey("metrics", Metrics)
ROLES = web.AppKey("roles", RoleSet)
RELAY = web.AppKey("relay", RelayHub)
COMPLIANCE = web.AppKey("compliance", Compliance)
TEMPLATES = web.AppKey("templates", Environment)
