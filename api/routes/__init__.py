"""HTTP routes, one module per resource. Everything but /healthz is under /api/v1."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes import admin, commands, health, status, uplink

api_router = APIRouter(prefix="/api/v1")
api_router.include_router(admin.router)
api_router.include_router(uplink.router)
api_router.include_router(commands.router)
api_router.include_router(status.router)

health_router = health.router
