from agentflow.async_client import AsyncAgentFlowClient
from agentflow.circuit_breaker import CircuitOpenError
from agentflow.client import AgentFlowClient
from agentflow.exceptions import PermissionDeniedError

__version__ = "2.0.0"

__all__ = [
    "AgentFlowClient",
    "AsyncAgentFlowClient",
    "PermissionDeniedError",
    "CircuitOpenError",
    "__version__",
]
