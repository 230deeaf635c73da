"""The command tools, registered only for a key with the write scope: one per command of the API, each
answering the ids, ``stream_version`` and the ``position`` it wrote (pass it as ``min_position`` to a read
to see the write). Every call carries an Idempotency-Key (the SDK's; or the caller's ``idempotency_key``,
so that a retried tool call appends nothing twice).
The annotations are evaluated at definition (no ``from __future__ import annotations``): the tool
schemas are built from them, and some name the catalog of the enclosing call."""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from agentflow_client import AgentFlowError, AsyncClient, Catalog, OrderLine
from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from services.mcp.errors import tool_error
from services.mcp.results import acknowledged

WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                         open_world_hint=False)  # fmt: skip
Key = Annotated[str | None, Field(description="optional Idempotency-Key: the same key and arguments append "
                                  "nothing twice (the original answer comes back)")]  # fmt: skip
Amount = Annotated[str, Field(description="decimal amount in major units, e.g. '19.99'")]
OrderId = Annotated[str, Field(description="the order's id, e.g. ORD-20260101-0001")]
PaymentId = Annotated[str, Field(description="the payment's id")]
ProductId = Annotated[str, Field(description="the product's id, e.g. PROD-001")]


class Line(BaseModel):
    product_id: str
    quantity: int = Field(ge=1)
    unit_price: Amount


async def _write(pending: Awaitable[Any]) -> dict[str, Any]:
    try:
        return acknowledged(await pending)
    except AgentFlowError as exc:
        raise tool_error(exc) from exc


def _about(catalog: Catalog, entity: str) -> str:
    doc = catalog.entities.get(entity)
    return f" ({doc.description}; read it with get_entity {entity})" if doc else ""


def add_command_tools(server: MCPServer, client: AsyncClient, catalog: Catalog) -> list[str]:
    """Registers the commands; their names."""
    c = client

    async def place_order(
        user_id: str, lines: list[Line], currency: Annotated[str, Field(description="ISO 4217, e.g. EUR")],
        channel: str | None = None, order_id: str | None = None, idempotency_key: Key = None,
    ) -> dict[str, Any]:  # fmt: skip
        order_lines = [OrderLine(x.product_id, x.quantity, x.unit_price) for x in lines]
        return await _write(c.place_order(user_id=user_id, lines=order_lines, currency=currency,
                                          channel=channel, order_id=order_id,
                                          idempotency_key=idempotency_key))  # fmt: skip

    async def confirm_order(order_id: OrderId, idempotency_key: Key = None) -> dict[str, Any]:
        return await _write(c.confirm_order(order_id, idempotency_key=idempotency_key))

    async def ship_order(order_id: OrderId, idempotency_key: Key = None) -> dict[str, Any]:
        return await _write(c.ship_order(order_id, idempotency_key=idempotency_key))

    async def deliver_order(order_id: OrderId, idempotency_key: Key = None) -> dict[str, Any]:
        return await _write(c.deliver_order(order_id, idempotency_key=idempotency_key))

    async def cancel_order(order_id: OrderId, reason: str | None = None, idempotency_key: Key = None
                           ) -> dict[str, Any]:  # fmt: skip
        return await _write(c.cancel_order(order_id, reason, idempotency_key=idempotency_key))

    async def refund_order(order_id: OrderId, amount: Amount, idempotency_key: Key = None) -> dict[str, Any]:
        return await _write(c.refund_order(order_id, amount, idempotency_key=idempotency_key))

    async def initiate_payment(
        order_id: OrderId, amount: Amount, currency: str, method: str = "card", payment_id: str | None = None,
        idempotency_key: Key = None,
    ) -> dict[str, Any]:  # fmt: skip
        return await _write(c.initiate_payment(
            order_id=order_id, amount=amount, currency=currency, method=method, payment_id=payment_id,
            idempotency_key=idempotency_key))  # fmt: skip

    async def complete_payment(payment_id: PaymentId, idempotency_key: Key = None) -> dict[str, Any]:
        return await _write(c.complete_payment(payment_id, idempotency_key=idempotency_key))

    async def fail_payment(payment_id: PaymentId, reason: str | None = None, idempotency_key: Key = None
                           ) -> dict[str, Any]:  # fmt: skip
        return await _write(c.fail_payment(payment_id, reason, idempotency_key=idempotency_key))

    async def refund_payment(payment_id: PaymentId, amount: Amount, idempotency_key: Key = None
                             ) -> dict[str, Any]:  # fmt: skip
        return await _write(c.refund_payment(payment_id, amount, idempotency_key=idempotency_key))

    async def register_user(
        user_id: str | None = None, name: str | None = None, email: str | None = None,
        region: str | None = None, idempotency_key: Key = None,
    ) -> dict[str, Any]:  # fmt: skip
        return await _write(c.register_user(user_id, name=name, email=email, region=region,
                                            idempotency_key=idempotency_key))  # fmt: skip

    async def register_product(
        name: str, category: str, price: Amount, currency: str, product_id: str | None = None,
        idempotency_key: Key = None,
    ) -> dict[str, Any]:  # fmt: skip
        return await _write(c.register_product(
            name=name, category=category, price=price, currency=currency, product_id=product_id,
            idempotency_key=idempotency_key))  # fmt: skip

    async def restock_product(product_id: ProductId, quantity: Annotated[int, Field(ge=1)],
                              idempotency_key: Key = None) -> dict[str, Any]:  # fmt: skip
        return await _write(c.restock_product(product_id, quantity, idempotency_key=idempotency_key))

    async def adjust_stock(product_id: ProductId, delta: int, reason: str, idempotency_key: Key = None
                           ) -> dict[str, Any]:  # fmt: skip
        return await _write(c.adjust_stock(product_id, delta, reason, idempotency_key=idempotency_key))

    async def change_price(product_id: ProductId, price: Amount, idempotency_key: Key = None
                           ) -> dict[str, Any]:  # fmt: skip
        return await _write(c.change_price(product_id, price, idempotency_key=idempotency_key))

    async def record_session_event(
        session_id: str,
        type: Annotated[str, Field(description="page_view, click, add_to_cart or checkout")],
        page_url: str, user_id: str | None = None, product_id: str | None = None, idempotency_key: Key = None,
    ) -> dict[str, Any]:  # fmt: skip
        return await _write(c.record_session_event(
            session_id, type=type, page_url=page_url, user_id=user_id, product_id=product_id,
            idempotency_key=idempotency_key))  # fmt: skip

    order, payment, product = _about(catalog, "order"), " (a payment of an order)", _about(catalog, "product")
    tools: list[tuple[Callable[..., Any], str]] = [
        (place_order, "Place an order" + order + ": a user, lines of product, quantity and unit price, one "
         "currency; reserves the stock (409 insufficient_stock when it cannot)."),
        (confirm_order, "Confirm a pending order."),
        (ship_order, "Ship a confirmed, paid order."),
        (deliver_order, "Mark a shipped order delivered."),
        (cancel_order, "Cancel an order that has not shipped; releases its stock."),
        (refund_order, "Refund (part of) an order."),
        (initiate_payment, "Start a payment" + payment + "."),
        (complete_payment, "Capture an initiated payment."),
        (fail_payment, "Record an initiated payment as failed."),
        (refund_payment, "Refund (part of) a completed payment."),
        (register_user, "Register a user" + _about(catalog, "user") + "."),
        (register_product, "Register a product" + product + " with its price."),
        (restock_product, "Add units to a product's stock."),
        (adjust_stock, "Correct a product's stock by a signed delta, with a reason."),
        (change_price, "Change a product's list price."),
        (record_session_event, "Record a browsing session's event" + _about(catalog, "session") + "."),
    ]  # fmt: skip
    for fn, description in tools:
        text = description + " Answers the ids, stream_version and the position written."
        server.add_tool(fn, name=fn.__name__, description=text, annotations=WRITES)
    return [fn.__name__ for fn, _ in tools]
