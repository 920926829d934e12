"""The gateway: serves models by alias, splits traffic by the registry's plan, logs every prediction.

``create_app(GatewayConfig(models=(...)))`` builds the FastAPI app; ``serve`` runs it with
uvicorn. See docs/gateway.md.
"""

from steward.serving.app import create_app
from steward.serving.config import GatewayConfig
from steward.serving.server import serve

__all__ = ["GatewayConfig", "create_app", "serve"]
