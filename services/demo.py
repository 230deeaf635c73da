"""Demo traffic: a small web store, payment gateway and inventory service talking to the API.

Exercises every event type and every rejection path: cancellations, refunds, payment
failures, insufficient stock, version conflicts, idempotent retries, malformed commands.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

log = logging.getLogger("agentflow.demo")

CATEGORIES = {
    "electronics": ["Headphones", "USB-C hub", "Webcam", "Keyboard", "Monitor arm"],
    "home": ["Desk lamp", "Kettle", "Throw blanket", "Plant pot"],
    "books": ["Streaming Systems", "Designing Data-Intensive Applications", "The Pragmatic Programmer"],
    "apparel": ["Hoodie", "Running socks", "Rain jacket"],
}
CURRENCIES = ["USD", "USD", "USD", "EUR", "GBP"]
REGIONS = ["us-east", "us-west", "eu-central", "uk", "apac"]
CHANNELS = ["web", "web", "mobile", "marketplace"]
PAGES = ["/", "/search", "/category/{c}", "/product/{p}", "/cart", "/checkout"]


def _route_of(path: str) -> str:
    """/v1/orders/ORD-1/ship -> /v1/orders/{id}/ship"""
    parts = path.strip("/").split("/")
    if len(parts) >= 3:
        parts[2] = "{id}"
    return "/" + "/".join(parts)


class _Server(Protocol):
    started: bool
    should_exit: bool


@dataclass
class DemoState:
    products: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> {currency, price, category}
    users: list[str] = field(default_factory=list)
    orders: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # id -> {status, total, currency, payment}
    outcomes: Counter[str] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)  # "POST /v1/orders/{id}/ship"-style
    returns: int = 0  # refunds that brought goods back


class DemoTraffic:
    def __init__(self, base_url: str, api_key: str, rate: float = 10.0, seed: int | None = None) -> None:
        self.client = httpx.Client(base_url=base_url, headers={"X-API-Key": api_key}, timeout=10.0)
        self.rate = rate
        self.rng = random.Random(seed)
        self.state = DemoState()

    # ---- plumbing -------------------------------------------------------------------
    def post(self, path: str, body: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
        resp = self.client.post(path, json=body or {}, headers=headers)
        self.state.outcomes[f"{resp.status_code}"] += 1
        if resp.status_code >= 400:
            try:
                self.state.error_codes[resp.json()["error"]["code"]] += 1
            except (ValueError, KeyError, TypeError):
                self.state.error_codes[f"http_{resp.status_code}"] += 1
        else:
            self.state.accepted[_route_of(path)] += 1
        return resp

    # ---- setup ------------------------------------------------------------------------
    def seed_catalog(self) -> None:
        for category, names in CATEGORIES.items():
            for name in names:
                currency = self.rng.choice(CURRENCIES)
                price = round(self.rng.uniform(5, 250), 2)
                r = self.post(
                    "/v1/products",
                    {"name": name, "category": category, "price": str(price), "currency": currency},
                )
                if r.status_code == 201:
                    pid = r.json()["product_id"]
                    self.state.products[pid] = {"currency": currency, "price": price, "category": category}
                    self.post(f"/v1/products/{pid}/restock", {"quantity": self.rng.randint(20, 200)})
        for _ in range(25):
            self.new_user()

    def new_user(self) -> None:
        r = self.post(
            "/v1/users",
            {
                "name": f"Customer {self.rng.randint(1, 99999)}",
                "email": f"c{uuid.uuid4().hex[:8]}@example.com",
                "region": self.rng.choice(REGIONS),
            },
        )
        if r.status_code == 201:
            self.state.users.append(r.json()["user_id"])

    # ---- one step of traffic ------------------------------------------------------------
    def step(self) -> None:
        action = self.rng.choices(
            ["session", "order", "advance", "restock", "adjust", "price", "user", "malformed", "conflict",
             "retry"],
            weights=[30, 25, 25, 5, 2, 2, 4, 3, 2, 4],
        )[0]
        getattr(self, f"do_{action}")()

    def do_session(self) -> None:
        sid = f"SES-{uuid.uuid4().hex[:12]}"
        user = self.rng.choice(self.state.users) if self.state.users and self.rng.random() < 0.7 else None
        pid = self.rng.choice(list(self.state.products)) if self.state.products else None
        depth = self.rng.choices([1, 2, 3, 4], weights=[40, 30, 20, 10])[0]
        steps = ["page_view", "click", "add_to_cart", "checkout_started"][:depth]
        for kind in ["page_view", *steps]:
            page = self.rng.choice(PAGES).format(c=self.rng.choice(list(CATEGORIES)), p=pid)
            body: dict[str, Any] = {"type": kind, "page_url": page}
            if user:
                body["user_id"] = user
            if pid and kind in ("click", "add_to_cart"):
                body["product_id"] = pid
            self.post(f"/v1/sessions/{sid}/events", body)

    def do_order(self) -> None:
        if not self.state.products or not self.state.users:
            return
        currency = self.rng.choice(CURRENCIES)
        pool = [p for p, v in self.state.products.items() if v["currency"] == currency] or list(
            self.state.products
        )
        currency = self.state.products[pool[0]]["currency"]
        pool = [p for p in pool if self.state.products[p]["currency"] == currency]
        lines = []
        for pid in self.rng.sample(pool, k=min(len(pool), self.rng.randint(1, 3))):
            # now and then ask for more than is in stock: 409 insufficient_stock
            qty = self.rng.randint(1, 3) if self.rng.random() > 0.05 else 5000 // 5
            lines.append(
                {"product_id": pid, "quantity": qty, "unit_price": str(self.state.products[pid]["price"])}
            )
        body = {
            "user_id": self.rng.choice(self.state.users),
            "currency": currency,
            "channel": self.rng.choice(CHANNELS),
            "lines": lines,
        }
        key = str(uuid.uuid4())
        r = self.post("/v1/orders", body, **{"Idempotency-Key": key})
        if r.status_code == 201:
            oid = r.json()["order_id"]
            total = sum(float(str(ln["unit_price"])) * int(str(ln["quantity"])) for ln in lines)
            self.state.orders[oid] = {
                "status": "pending",
                "total": round(total, 2),
                "currency": currency,
                "payment": None,
                "key": key,
                "body": body,
                "lines": {str(ln["product_id"]): int(str(ln["quantity"])) for ln in lines},
            }

    def do_advance(self) -> None:
        live = [
            o
            for o, v in self.state.orders.items()
            if v["status"] not in ("delivered", "cancelled", "refunded")
        ]
        if not live:
            return
        oid = self.rng.choice(live)
        order = self.state.orders[oid]
        status = order["status"]
        roll = self.rng.random()
        if status == "pending":
            if roll < 0.12:
                self._cancel(oid)
            else:
                self._ok(self.post(f"/v1/orders/{oid}/confirm"), oid, "confirmed")
        elif status == "confirmed" and order["payment"] is None:
            r = self.post(
                "/v1/payments",
                {
                    "order_id": oid,
                    "amount": str(order["total"]),
                    "currency": order["currency"],
                    "method": self.rng.choice(["card", "card", "bank_transfer", "wallet"]),
                },
            )
            if r.status_code == 201:
                order["payment"] = r.json()["payment_id"]
        elif status == "confirmed":
            pay = order["payment"]
            if roll < 0.1:
                self.post(
                    f"/v1/payments/{pay}/fail",
                    {"reason": self.rng.choice(["card_declined", "insufficient_funds"])},
                )
                order["payment"] = None
                if self.rng.random() < 0.5:
                    self._cancel(oid)
            elif roll < 0.15:  # shipping an unpaid order: 409
                self.post(f"/v1/orders/{oid}/ship")
            else:
                self._ok(self.post(f"/v1/payments/{pay}/complete"), oid, "paid")
        elif status == "paid":
            self._ok(self.post(f"/v1/orders/{oid}/ship"), oid, "shipped")
        elif status == "shipped":
            self._ok(self.post(f"/v1/orders/{oid}/deliver"), oid, "delivered")
        if order["status"] == "delivered" and self.rng.random() < 0.15:
            self._refund(oid, order)

    def _refund(self, oid: str, order: dict[str, Any]) -> None:
        """A full or half refund; most bring goods back (a whole line, restocked unless damaged)."""
        amount = order["total"] if self.rng.random() < 0.5 else round(order["total"] / 2, 2)
        body: dict[str, Any] = {"amount": str(amount)}
        if order["lines"] and self.rng.random() < 0.7:
            pid, qty = self.rng.choice(sorted(order["lines"].items()))
            body["lines"] = [{"product_id": pid, "quantity": qty}]
            body["restock"] = self.rng.random() < 0.8
        r = self.post(f"/v1/orders/{oid}/refund", body)
        if r.status_code == 200 and "lines" in body:
            order["lines"].pop(body["lines"][0]["product_id"])
            self.state.returns += 1
        if r.status_code == 200 and amount == order["total"]:
            order["status"] = "refunded"
        # refunding more than was paid: 409
        self.post(f"/v1/orders/{oid}/refund", {"amount": str(order["total"] * 3)})

    def _cancel(self, oid: str) -> None:
        self._ok(self.post(f"/v1/orders/{oid}/cancel", {"reason": "customer_request"}), oid, "cancelled")

    def _ok(self, r: httpx.Response, oid: str, status: str) -> None:
        if r.status_code in (200, 201):
            self.state.orders[oid]["status"] = status

    def do_restock(self) -> None:
        if self.state.products:
            pid = self.rng.choice(list(self.state.products))
            self.post(f"/v1/products/{pid}/restock", {"quantity": self.rng.randint(10, 100)})

    def do_adjust(self) -> None:
        """A stock count or a write-off; now and then one that would dip into reserved stock (409)."""
        if self.state.products:
            pid = self.rng.choice(list(self.state.products))
            reason = self.rng.choice(["count", "damage", "shrinkage", "correction"])
            delta = self.rng.randint(1, 5) * (1 if reason in ("count", "correction") else -1)
            if self.rng.random() < 0.1:
                delta = -1_000_000
            self.post(f"/v1/products/{pid}/adjust", {"delta": delta, "reason": reason})

    def do_price(self) -> None:
        if self.state.products:
            pid = self.rng.choice(list(self.state.products))
            price = round(self.state.products[pid]["price"] * self.rng.uniform(0.9, 1.1), 2)
            if self.post(f"/v1/products/{pid}/price", {"price": str(price)}).status_code == 200:
                self.state.products[pid]["price"] = price

    def do_user(self) -> None:
        self.new_user()

    def do_malformed(self) -> None:
        choices: list[tuple[str, dict[str, Any]]] = [
            (
                "/v1/orders",
                {"user_id": "", "currency": "XXX", "lines": [{"product_id": "PROD-001", "quantity": 0}]},
            ),
            ("/v1/products", {"name": "", "price": "-3", "currency": "USD"}),
            (
                "/v1/payments",
                {"order_id": "ORD-unknown", "amount": "abc", "currency": "USD", "method": "cash"},
            ),
            ("/v1/sessions/SES-bad/events", {"type": "teleport"}),
        ]
        path, body = self.rng.choice(choices)
        self.post(path, body)

    def do_conflict(self) -> None:
        if self.state.products:
            pid = self.rng.choice(list(self.state.products))
            self.post(f"/v1/products/{pid}/restock", {"quantity": 1}, **{"If-Match": "1"})

    def do_retry(self) -> None:
        placed = [v for v in self.state.orders.values() if v.get("key")]
        if placed:
            order = self.rng.choice(placed)
            self.post("/v1/orders", order["body"], **{"Idempotency-Key": order["key"]})

    # ---- loop ---------------------------------------------------------------------------
    def summary(self) -> str:
        def value(name: str, **params: str) -> dict[str, Any]:
            body: dict[str, Any] = self.client.get(f"/v1/metrics/{name}", params=params).json()
            return body

        try:
            rev = value("revenue", window="1h")
            orders = value("order_count", window="1h")
            conv = value("conversion_rate", window="1h")
            err = value("error_rate", window="1h")
            active = value("active_sessions", window="now")
        except (httpx.HTTPError, ValueError) as exc:
            return f"demo: metrics not readable yet ({exc})"
        sent = sum(self.state.outcomes.values())
        rejected = sum(self.state.error_codes.values())
        return (
            f"demo: {sent} commands ({rejected} rejected) | last 1h: revenue {rev.get('value', 0):.2f} "
            f"{rev.get('unit')}, orders {orders.get('value', 0):.0f}, conversion {conv.get('value', 0):.1%}, "
            f"error rate {err.get('value', 0):.1%}, active sessions {active.get('value', 0):.0f} "
            f"| position {rev.get('meta', {}).get('as_of_position')}, "
            f"freshness {rev.get('meta', {}).get('freshness_seconds')}s"
        )

    def run(self, stop: threading.Event, report_every_s: float = 10.0) -> None:
        self.seed_catalog()
        next_report = time.monotonic() + 2.0
        while not stop.is_set():
            try:
                self.step()
            except httpx.HTTPError as exc:
                if not stop.is_set():
                    log.warning("demo request failed: %s", exc)
                stop.wait(1.0)
            if time.monotonic() >= next_report:
                print(self.summary(), flush=True)
                next_report = time.monotonic() + report_every_s
            stop.wait(1.0 / self.rate if self.rate > 0 else 0)


def start_demo(base_url: str, api_key: str, server: _Server, rate: float = 10.0) -> threading.Thread:
    stop = threading.Event()

    def body() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.1)
        traffic = DemoTraffic(base_url, api_key, rate=rate)
        watcher = threading.Thread(target=lambda: _stop_when(server, stop), daemon=True)
        watcher.start()
        traffic.run(stop)

    thread = threading.Thread(target=body, name="demo-traffic", daemon=True)
    thread.start()
    return thread


def _stop_when(server: _Server, stop: threading.Event) -> None:
    while not server.should_exit:
        time.sleep(0.2)
    stop.set()
