"""The write side: resource-style command endpoints (API.md, "Write side"). Each route runs one command
through ``commands.service.CommandService`` (validate, decide, append; rejections recorded; in the
database threads: ``Commands`` in services/api/dependencies.py) and answers
``{<type>_id, stream_version, position}``: 201 when it created the entity, else 200.

Bodies are declared as msgspec Structs for the schema, but Litestar does not convert them
(``SkipValidation``): the command's own validation (commands/validation.py) reads the JSON object and
reports every field error at once (422 validation_failed), as it always has, and a malformed command
is counted as a rejected one. Headers: ``If-Match`` (the stream version the caller expects; 409
version_conflict otherwise), ``Idempotency-Key`` (a repeat replays the first answer; another body with
the same key is 422), ``X-Correlation-ID``, ``X-Causation-ID`` and ``X-Actor`` go into the events'
metadata.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from litestar import Request, Response, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter, JSONBody, PathParameter, SkipValidation
from structlog.contextvars import bind_contextvars

from commands.idempotency import IdempotencyKeyReused
from commands.ports import VersionConflict
from commands.service import MAX_IDEMPOTENCY_KEY, InvalidIdempotencyKey
from commands.specs.base import MAX_REASON
from commands.specs.orders import MAX_CHANNEL
from commands.specs.products import MAX_CATEGORY
from commands.specs.sessions import MAX_PAGE_URL
from commands.specs.users import MAX_EMAIL, MAX_REGION
from commands.validation import MAX_TEXT, InvalidCommand
from connectors.prometheus_metrics import COMMANDS
from domain.errors import DomainError, NotFound
from domain.ids import MAX_ID_LENGTH, SAFE_ID
from domain.money import CURRENCY_EXPONENTS, MAX_MINOR
from domain.order import MAX_LINES, MAX_QUANTITY, MIN_QUANTITY
from domain.payment import PAYMENT_METHODS
from domain.product import ADJUST_REASONS, MAX_RESTOCK
from domain.session import API_EVENT_TYPES
from services.api.dependencies import WRITE, Commands, correlation_id
from services.api.errors import ApiError
from services.api.openapi import body, errors

# ---- bodies (documentation: the command's validation reads the JSON object itself) -----------------
# The constraints say what that validation (commands/specs/, commands/validation.py) and the domain's
# refusals accept, from the domain's own constants, so that a client or a generator built from the
# schema sends commands that can succeed. Litestar enforces none of them (SkipValidation). Where the
# schema cannot say it (an amount's decimals depend on the currency; a product appears on one line only;
# an integer is written without a fraction, while JSON Schema counts 2.0 as an integer), the command
# still answers 422 or 409.

ID_PATTERN = f"^{SAFE_ID.pattern}$"
_ID_TEXT = f"1-{MAX_ID_LENGTH} characters of A-Z a-z 0-9 . _ : -"


def _id(description: str) -> msgspec.Meta:
    return msgspec.Meta(pattern=ID_PATTERN, min_length=1, max_length=MAX_ID_LENGTH, description=description)


Id = Annotated[str, _id(f"an id: {_ID_TEXT}")]
NewId = Annotated[str, _id(f"the id to create ({_ID_TEXT}); default: generated")]


# No string may hold NUL (services/api/text_guard.py); a required text must hold more than white space.
_NO_NUL = r"^[^\u0000]*$"
_NOT_BLANK = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"


def _text(max_len: int, description: str | None = None) -> msgspec.Meta:
    """Text as ``Fields.text`` reads it: stripped, then at most ``max_len`` characters; a required one
    must not be blank (an optional blank one counts as absent, so it takes ``_optional_text``)."""
    return msgspec.Meta(max_length=max_len, pattern=_NOT_BLANK, description=description)


def _optional_text(max_len: int, description: str | None = None) -> msgspec.Meta:
    return msgspec.Meta(max_length=max_len, pattern=_NO_NUL, description=description)


# An amount: decimal major units, a JSON number or a decimal string, never negative; at most the
# currency's minor digits and MAX_MINOR minor units. The schema allows the finest currency's digits and
# the largest amount that fits every currency (a number: a multiple of 0.01, as JSON Schema reads it:
# the decimal written, which is what parse_decimal reads too).
_DECIMALS = max(CURRENCY_EXPONENTS.values())
_MAX_MAJOR = MAX_MINOR // 10**_DECIMALS
_WHOLE = rf"[1-9][0-9]{{0,{len(str(_MAX_MAJOR)) - 2}}}"  # 1 to 9...9 < _MAX_MAJOR, no leading zero
_FRACTION = rf"(\.[0-9]{{1,{_DECIMALS}}})?"
_CENT = 10**-_DECIMALS
_WHOLE_CURRENCIES = ", ".join(code for code, exp in CURRENCY_EXPONENTS.items() if exp == 0)


def _amount(*, positive: bool, description: str = "") -> msgspec.Meta:
    if positive:
        text = rf"^({_WHOLE}{_FRACTION}|0\.[0-9]{{0,{_DECIMALS - 1}}}[1-9])$"
        number = {"type": "number", "exclusiveMinimum": 0, "maximum": _MAX_MAJOR, "multipleOf": _CENT}
    else:
        text = rf"^(0|{_WHOLE}){_FRACTION}$"
        number = {"type": "number", "minimum": 0, "maximum": _MAX_MAJOR, "multipleOf": _CENT}
    least = "above 0" if positive else "0 or more"
    about = (f"decimal major units, a JSON number or a string such as \"19.99\", {least}, with at most "
             f"the currency's minor digits ({_DECIMALS}; none for {_WHOLE_CURRENCIES})")
    # Litestar reads msgspec's ``extra_json_schema["extra"]`` into the field's schema: a oneOf whose
    # branches keep their constraints (those on a union's members it would drop)
    return msgspec.Meta(
        description=f"{description}: {about}" if description else about,
        extra_json_schema={"extra": {"one_of": [{"type": "string", "pattern": text}, number]}},
    )


Amount = Annotated[str | int | float, _amount(positive=False)]
PositiveAmount = Annotated[str | int | float, _amount(positive=True)]

if TYPE_CHECKING:  # the values are the domain's, known at run time: to mypy they are strings
    CurrencyCode = str
    PaymentMethod = str
    AdjustReason = str
    SessionEventType = str
else:
    CurrencyCode = Annotated[Literal[tuple(CURRENCY_EXPONENTS)], msgspec.Meta(description="ISO 4217 code")]
    PaymentMethod = Literal[PAYMENT_METHODS]
    AdjustReason = Annotated[
        Literal[ADJUST_REASONS], msgspec.Meta(description="legacy_sync: how the legacy ingestor records a "
                                              "source's inventory going down")
    ]
    SessionEventType = Annotated[
        Literal[tuple(API_EVENT_TYPES)], msgspec.Meta(description="checkout is checkout_started")
    ]
OrderQuantity = Annotated[
    int, msgspec.Meta(ge=MIN_QUANTITY, le=MAX_QUANTITY, description=f"units, {MIN_QUANTITY}-{MAX_QUANTITY}")
]


class RegisterProduct(msgspec.Struct):
    name: Annotated[str, _text(MAX_TEXT)]
    category: Annotated[str, _text(MAX_CATEGORY)]
    price: Amount
    currency: CurrencyCode
    product_id: NewId | None = None


class RegisterUser(msgspec.Struct):
    user_id: NewId | None = None
    name: Annotated[str, _optional_text(MAX_TEXT)] | None = None
    email: Annotated[
        str,
        msgspec.Meta(max_length=MAX_EMAIL, pattern=r"^[^ \u0000]*@[^ \u0000]*$", description="@, no space"),
    ] | None = None
    region: Annotated[str, _optional_text(MAX_REGION)] | None = None


class OrderLineBody(msgspec.Struct):
    product_id: Id
    quantity: OrderQuantity
    unit_price: Annotated[str | int | float, _amount(positive=False, description="the unit's price")]


class PlaceOrder(msgspec.Struct):
    user_id: Id
    currency: CurrencyCode
    lines: Annotated[
        list[OrderLineBody],
        msgspec.Meta(min_length=1, max_length=MAX_LINES, description=f"1-{MAX_LINES} lines, one per product"),
    ]
    order_id: NewId | None = None
    channel: Annotated[str, _optional_text(MAX_CHANNEL, "default: web")] | None = None


class InitiatePayment(msgspec.Struct):
    order_id: Id
    amount: PositiveAmount
    currency: CurrencyCode
    method: PaymentMethod
    payment_id: NewId | None = None


class Quantities(msgspec.Struct):
    quantity: Annotated[int, msgspec.Meta(ge=1, le=MAX_RESTOCK, description=f"units in, 1-{MAX_RESTOCK}")]


class Adjustment(msgspec.Struct):
    delta: Annotated[
        int,
        msgspec.Meta(ge=-MAX_RESTOCK, le=MAX_RESTOCK, description="units to add (positive) or remove "
                     f"(negative), not 0, at most {MAX_RESTOCK} either way",
                     extra_json_schema={"extra": {"schema_not": {"const": 0}}}),
    ]  # fmt: skip
    reason: AdjustReason


class PriceChange(msgspec.Struct):
    price: Amount


class Reservation(msgspec.Struct):
    order_id: Id
    quantity: Annotated[int, msgspec.Meta(ge=1, description="units, a positive integer")]


class Reason(msgspec.Struct):
    reason: Annotated[str, _optional_text(MAX_REASON, "free text")] | None = None


class ReturnLine(msgspec.Struct):
    product_id: Id
    quantity: Annotated[
        int, msgspec.Meta(ge=MIN_QUANTITY, le=MAX_QUANTITY, description="units returned, at most what the "
                          "order's line shipped and has not returned yet")
    ]


class Refund(msgspec.Struct):
    amount: PositiveAmount
    lines: Annotated[
        list[ReturnLine],
        msgspec.Meta(min_length=1, max_length=MAX_LINES, description="the units returned (default: none)"),
    ] | None = None
    restock: Annotated[bool, msgspec.Meta(description="returned units go back into stock")] = True


class SessionEvent(msgspec.Struct):
    type: SessionEventType
    page_url: Annotated[str, _text(MAX_PAGE_URL)]
    user_id: Id | None = None
    product_id: Id | None = None


class NoBody(msgspec.Struct):
    """The transition takes no fields (an empty object or no body)."""


# ---- answers -----------------------------------------------------------------------------------


class ProductAck(msgspec.Struct):
    product_id: str
    stream_version: int
    position: int


class UserAck(msgspec.Struct):
    user_id: str
    stream_version: int
    position: int


class OrderAck(msgspec.Struct):
    order_id: str
    stream_version: int
    position: int


class PaymentAck(msgspec.Struct):
    payment_id: str
    stream_version: int
    position: int


class SessionAck(msgspec.Struct):
    session_id: str
    stream_version: int
    position: int


# ---- headers, and the call ----------------------------------------------------------------------


# what parse_if_match takes, for the schema (``schema_extra``: documented, not enforced by Litestar)
IF_MATCH_PATTERN = r'^(\*|(W/)?"?[0-9]+"?)?$'


def parse_if_match(raw: str | None) -> int | None:
    """``If-Match``: a stream version, bare or quoted (``"3"``, ``W/"3"``); ``*`` or empty: none."""
    if raw is None or raw.strip() in ("", "*"):
        return None
    value = raw.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    try:
        version = int(value)
    except ValueError as exc:
        raise ApiError(422, "invalid_if_match", "If-Match must be a stream version (integer)") from exc
    if version < 0:
        raise ApiError(422, "invalid_if_match", "If-Match must be a non-negative stream version")
    return version


@dataclass(frozen=True, slots=True)
class CommandCall:
    """One command request: who, with which headers, through which use case."""

    commands: Commands
    correlation_id: str
    metadata: dict[str, Any]
    if_match: int | None
    idempotency_key: str | None


def command_call(
    request: Request[Any, Any, Any],
    commands: NamedDependency[Commands],
    if_match: Annotated[
        str | None,
        HeaderParameter(name="If-Match", description="the stream version the command expects (a bare "
                        "integer or quoted); 409 version_conflict with the current one otherwise",
                        schema_extra={"pattern": IF_MATCH_PATTERN}),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        HeaderParameter(name="Idempotency-Key", description=f"at most {MAX_IDEMPOTENCY_KEY} characters: "
                        "the same key with the same body replays the first answer (no new events); "
                        "with another body 422 idempotency_key_reused",
                        schema_extra={"max_length": MAX_IDEMPOTENCY_KEY}),
    ] = None,
    causation_id: Annotated[
        str | None, HeaderParameter(name="X-Causation-ID", description="stored in the events' metadata")
    ] = None,
    actor: Annotated[
        str | None, HeaderParameter(name="X-Actor", description="stored in the events' metadata")
    ] = None,
) -> CommandCall:  # fmt: skip
    cid = correlation_id(request)  # X-Correlation-ID, else the request id; the error responses carry it too
    actor = actor or f"api-key:{commands.tenant}"
    metadata = {"correlation_id": cid, "causation_id": causation_id or cid, "actor": actor}
    return CommandCall(commands, cid, metadata, parse_if_match(if_match), idempotency_key)


def _payload(data: Any) -> dict[str, Any]:
    """The body as the command reads it: a JSON object (no body: an empty one)."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_body", "request body must be a JSON object")
    return data


async def _submit(
    call: CommandCall, name: str, entity_id: str | None, data: Any, ack: Callable[[str, int, int], Any]
) -> Response[Any]:
    """The command's answer, counted by outcome (connectors/prometheus_metrics.py COMMANDS)."""
    try:
        response = await _answer(call, name, entity_id, data, ack)
    except ApiError as exc:
        COMMANDS.labels(name, exc.code).inc()
        raise
    except Exception:
        COMMANDS.labels(name, "internal_error").inc()
        raise
    COMMANDS.labels(name, "replayed" if "Idempotent-Replayed" in response.headers else "accepted").inc()
    return response


async def _answer(
    call: CommandCall, name: str, entity_id: str | None, data: Any, ack: Callable[[str, int, int], Any]
) -> Response[Any]:
    try:
        result = await call.commands.submit(
            name, entity_id, _payload(data), call.metadata, call.if_match, call.idempotency_key
        )
    except InvalidIdempotencyKey as exc:
        raise ApiError(422, "invalid_idempotency_key", str(exc)) from exc
    except IdempotencyKeyReused as exc:
        raise ApiError(422, "idempotency_key_reused", str(exc)) from exc
    except InvalidCommand as exc:
        raise ApiError(422, "validation_failed", "request is not valid", exc.errors) from exc
    except DomainError as exc:
        raise ApiError(409, exc.code, exc.message, exc.details) from exc
    except VersionConflict as exc:
        raise ApiError(
            409,
            "version_conflict",
            f"{exc.stream_type} {exc.stream_id} is at version {exc.actual}, not {exc.expected}",
            {"current_version": exc.actual, "expected_version": exc.expected},
            headers={"ETag": f'"{exc.actual}"'},
        ) from exc
    except NotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
    bind_contextvars(position=result.position)  # on the request's log lines, its access line too
    headers = {"ETag": f'"{result.stream_version}"', "X-Correlation-ID": call.correlation_id}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    answer = ack(result.entity_id, result.stream_version, result.position)
    return Response(answer, status_code=201 if result.created else 200, headers=headers)


_HEADERS = [
    ResponseHeader(name="ETag", description="the stream version after the command, quoted",
                   documentation_only=True),
    ResponseHeader(name="X-Correlation-ID", description="the request's correlation id",
                   documentation_only=True),
    ResponseHeader(name="Idempotent-Replayed", description="true when this is a repeated Idempotency-Key's "
                   "first answer", documentation_only=True),
]  # fmt: skip
_CALL = {"call": Provide(command_call, sync_to_thread=False)}


def _create(path: str, name: str) -> Any:
    """A command creating an entity: 201."""
    return post(
        path, name=name, opt=WRITE, status_code=201, dependencies=_CALL, response_headers=_HEADERS,
        responses=errors(401, 409, 413, 422, 429),
    )  # fmt: skip


def _transition(path: str, name: str, *, may_create: bool = False) -> Any:
    """A command on an existing entity: 200 (404 for an unknown one); a session's first event: 201."""
    responses: dict[int, ResponseSpec] = errors(401, 404, 409, 413, 422, 429)
    if may_create:
        responses[201] = body(SessionAck, "the session's first event")
    return post(
        path, name=name, opt=WRITE, status_code=200, dependencies=_CALL, response_headers=_HEADERS,
        responses=responses,
    )


# The ids' format is documented (``schema_extra``), not checked by Litestar: an id that cannot exist is
# a 404 of the command's own, a bad session id a 422 field error.
_ID_SCHEMA = {"pattern": ID_PATTERN, "min_length": 1, "max_length": MAX_ID_LENGTH}
ProductId = Annotated[str, PathParameter(description="e.g. PROD-001", schema_extra=_ID_SCHEMA)]
OrderId = Annotated[str, PathParameter(description="e.g. ORD-20260101-0001", schema_extra=_ID_SCHEMA)]
PaymentId = Annotated[str, PathParameter(description="e.g. PAY-20260101-0001", schema_extra=_ID_SCHEMA)]
SessionId = Annotated[str, PathParameter(description=f"any id of {_ID_TEXT}", schema_extra=_ID_SCHEMA)]


# ---- products ----------------------------------------------------------------------------------


@_create("/v1/products", "product.register")
async def register_product(
    call: NamedDependency[CommandCall], data: JSONBody[SkipValidation[RegisterProduct]]
) -> Response[ProductAck]:
    return await _submit(call, "product.register", None, data, ProductAck)


@_transition("/v1/products/{product_id:str}/restock", "product.restock")
async def restock_product(
    call: NamedDependency[CommandCall], product_id: ProductId, data: JSONBody[SkipValidation[Quantities]]
) -> Response[ProductAck]:
    return await _submit(call, "product.restock", product_id, data, ProductAck)


@_transition("/v1/products/{product_id:str}/adjust", "product.adjust")
async def adjust_product(
    call: NamedDependency[CommandCall], product_id: ProductId, data: JSONBody[SkipValidation[Adjustment]]
) -> Response[ProductAck]:
    """Correct the stock on hand (never below what open orders hold: 409 stock_below_reserved)."""
    return await _submit(call, "product.adjust", product_id, data, ProductAck)


@_transition("/v1/products/{product_id:str}/price", "product.price")
async def price_product(
    call: NamedDependency[CommandCall], product_id: ProductId, data: JSONBody[SkipValidation[PriceChange]]
) -> Response[ProductAck]:
    return await _submit(call, "product.price", product_id, data, ProductAck)


@_transition("/v1/products/{product_id:str}/reserve", "product.reserve")
async def reserve_product(
    call: NamedDependency[CommandCall], product_id: ProductId, data: JSONBody[SkipValidation[Reservation]]
) -> Response[ProductAck]:
    return await _submit(call, "product.reserve", product_id, data, ProductAck)


@_transition("/v1/products/{product_id:str}/release", "product.release")
async def release_product(
    call: NamedDependency[CommandCall], product_id: ProductId, data: JSONBody[SkipValidation[Reservation]]
) -> Response[ProductAck]:
    return await _submit(call, "product.release", product_id, data, ProductAck)


# ---- users -------------------------------------------------------------------------------------


@_create("/v1/users", "user.register")
async def register_user(
    call: NamedDependency[CommandCall], data: JSONBody[SkipValidation[RegisterUser | None]] = None
) -> Response[UserAck]:
    return await _submit(call, "user.register", None, data, UserAck)


# ---- orders ------------------------------------------------------------------------------------


@_create("/v1/orders", "order.place")
async def place_order(
    call: NamedDependency[CommandCall], data: JSONBody[SkipValidation[PlaceOrder]]
) -> Response[OrderAck]:
    """Reserves the lines' stock (409 insufficient_stock when it cannot)."""
    return await _submit(call, "order.place", None, data, OrderAck)


@_transition("/v1/orders/{order_id:str}/confirm", "order.confirm")
async def confirm_order(
    call: NamedDependency[CommandCall],
    order_id: OrderId,
    data: JSONBody[SkipValidation[NoBody | None]] = None,
) -> Response[OrderAck]:
    return await _submit(call, "order.confirm", order_id, data, OrderAck)


@_transition("/v1/orders/{order_id:str}/cancel", "order.cancel")
async def cancel_order(
    call: NamedDependency[CommandCall],
    order_id: OrderId,
    data: JSONBody[SkipValidation[Reason | None]] = None,
) -> Response[OrderAck]:
    """Releases the order's reserved stock."""
    return await _submit(call, "order.cancel", order_id, data, OrderAck)


@_transition("/v1/orders/{order_id:str}/ship", "order.ship")
async def ship_order(
    call: NamedDependency[CommandCall],
    order_id: OrderId,
    data: JSONBody[SkipValidation[NoBody | None]] = None,
) -> Response[OrderAck]:
    return await _submit(call, "order.ship", order_id, data, OrderAck)


@_transition("/v1/orders/{order_id:str}/deliver", "order.deliver")
async def deliver_order(
    call: NamedDependency[CommandCall],
    order_id: OrderId,
    data: JSONBody[SkipValidation[NoBody | None]] = None,
) -> Response[OrderAck]:
    return await _submit(call, "order.deliver", order_id, data, OrderAck)


@_transition("/v1/orders/{order_id:str}/refund", "order.refund")
async def refund_order(
    call: NamedDependency[CommandCall], order_id: OrderId, data: JSONBody[SkipValidation[Refund]]
) -> Response[OrderAck]:
    """Refunds across the order's captured payments; returned lines go back into stock unless
    ``restock`` is false."""
    return await _submit(call, "order.refund", order_id, data, OrderAck)


# ---- payments ----------------------------------------------------------------------------------


@_create("/v1/payments", "payment.initiate")
async def initiate_payment(
    call: NamedDependency[CommandCall], data: JSONBody[SkipValidation[InitiatePayment]]
) -> Response[PaymentAck]:
    return await _submit(call, "payment.initiate", None, data, PaymentAck)


@_transition("/v1/payments/{payment_id:str}/complete", "payment.complete")
async def complete_payment(
    call: NamedDependency[CommandCall],
    payment_id: PaymentId,
    data: JSONBody[SkipValidation[NoBody | None]] = None,
) -> Response[PaymentAck]:
    return await _submit(call, "payment.complete", payment_id, data, PaymentAck)


@_transition("/v1/payments/{payment_id:str}/fail", "payment.fail")
async def fail_payment(
    call: NamedDependency[CommandCall],
    payment_id: PaymentId,
    data: JSONBody[SkipValidation[Reason | None]] = None,
) -> Response[PaymentAck]:
    return await _submit(call, "payment.fail", payment_id, data, PaymentAck)


@_transition("/v1/payments/{payment_id:str}/refund", "payment.refund")
async def refund_payment(
    call: NamedDependency[CommandCall], payment_id: PaymentId, data: JSONBody[SkipValidation[Refund]]
) -> Response[PaymentAck]:
    return await _submit(call, "payment.refund", payment_id, data, PaymentAck)


# ---- sessions ----------------------------------------------------------------------------------


@_transition("/v1/sessions/{session_id:str}/events", "session.record", may_create=True)
async def record_session_event(
    call: NamedDependency[CommandCall], session_id: SessionId, data: JSONBody[SkipValidation[SessionEvent]]
) -> Response[SessionAck]:
    """page_view, click, add_to_cart or checkout; the session's first event creates it (201)."""
    return await _submit(call, "session.record", session_id, data, SessionAck)


COMMAND_ROUTES = [
    register_product, restock_product, adjust_product, price_product, reserve_product, release_product,
    register_user,
    place_order, confirm_order, cancel_order, ship_order, deliver_order, refund_order,
    initiate_payment, complete_payment, fail_payment, refund_payment,
    record_session_event,
]  # fmt: skip
