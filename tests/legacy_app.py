"""The legacy shop application that CDC captures: its schema and an application-like writer.

The same tables exist in Postgres (schema ``public`` of database ``shop``, every table ``REPLICA
IDENTITY FULL``) and MariaDB (database ``shop``). ``LegacyShopWriter`` behaves like the old app: one
short transaction per business operation through a plain DB-API connection (psycopg 3 or pymysql,
``%s`` parameters), and it keeps an in-memory model of what the tables must say afterwards
(``expected()``), so tests can compare the source tables, and every read model built from their
change stream, against it.

Timestamps are naive UTC ``datetime`` values chosen by the writer (``clock``), strictly increasing,
microsecond precision (MariaDB columns are ``TIMESTAMP(6)`` so a touch-only update always changes the
row; the Postgres columns are ``TIMESTAMP`` without time zone, as in many legacy schemas).
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

Dialect = Literal["postgres", "mariadb"]
Row = dict[str, Any]

ORDER_STATUSES = ("pending", "confirmed", "shipped", "delivered", "cancelled")
OPEN_STATUSES = ("pending", "confirmed")  # the order's units are still in the warehouse, held for it
GONE_STATUSES = ("shipped", "delivered")  # the units left
PAYMENT_METHODS = ("card", "bank_transfer", "wallet")
PAYMENT_STATUSES = ("pending", "completed", "failed")
CHANNELS = ("web", "mobile", "store", "phone")
CATEGORIES = ("books", "electronics", "garden", "kitchen", "toys")
REGIONS = ("north", "south", "east", "west")

TABLES = ("products", "inventory", "customers", "orders", "payments")
CAPTURED_TABLES = ("products", "inventory", "orders", "payments")
PRIMARY_KEYS = {"products": "id", "inventory": "product_id", "customers": "id", "orders": "id",
                "payments": "id"}
COLUMNS: dict[str, tuple[str, ...]] = {
    "products": ("id", "sku", "name", "category", "price_cents", "currency", "updated_at"),
    "inventory": ("product_id", "quantity", "updated_at"),
    "customers": ("id", "name", "email", "region"),
    "orders": ("id", "customer_id", "product_id", "quantity", "unit_price_cents", "currency", "channel",
               "status", "created_at", "updated_at"),
    "payments": ("id", "order_id", "amount_cents", "currency", "method", "status", "updated_at"),
}


def _ddl(dialect: Dialect) -> list[str]:
    ts = "TIMESTAMP" if dialect == "postgres" else "TIMESTAMP(6) NULL DEFAULT NULL"
    tail = "" if dialect == "postgres" else " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    stmts = [
        f"""CREATE TABLE IF NOT EXISTS products (
            id INT PRIMARY KEY, sku VARCHAR(40), name VARCHAR(200), category VARCHAR(100),
            price_cents INT NOT NULL, currency CHAR(3) NOT NULL, updated_at {ts}){tail}""",
        f"""CREATE TABLE IF NOT EXISTS inventory (
            product_id INT PRIMARY KEY, quantity INT NOT NULL, updated_at {ts}){tail}""",
        f"""CREATE TABLE IF NOT EXISTS customers (
            id INT PRIMARY KEY, name VARCHAR(200), email VARCHAR(200), region VARCHAR(50)){tail}""",
        f"""CREATE TABLE IF NOT EXISTS orders (
            id INT PRIMARY KEY, customer_id INT NOT NULL, product_id INT NOT NULL, quantity INT NOT NULL,
            unit_price_cents INT NOT NULL, currency CHAR(3) NOT NULL, channel VARCHAR(20),
            status VARCHAR(20) NOT NULL, created_at {ts}, updated_at {ts}){tail}""",
        f"""CREATE TABLE IF NOT EXISTS payments (
            id INT PRIMARY KEY, order_id INT NOT NULL, amount_cents INT NOT NULL, currency CHAR(3) NOT NULL,
            method VARCHAR(20) NOT NULL, status VARCHAR(20) NOT NULL, updated_at {ts}){tail}""",
        "CREATE INDEX IF NOT EXISTS orders_customer_idx ON orders (customer_id)",
        "CREATE INDEX IF NOT EXISTS orders_status_idx ON orders (status)",
        "CREATE INDEX IF NOT EXISTS payments_order_idx ON payments (order_id)",
    ]
    if dialect == "postgres":
        stmts += [f"ALTER TABLE {t} REPLICA IDENTITY FULL" for t in TABLES]
    return stmts


def create_schema(conn: Any, dialect: Dialect) -> None:
    """Create the shop tables (idempotent) and commit. ``conn`` is connected to database ``shop``."""
    with _cursor(conn) as cur:
        for stmt in _ddl(dialect):
            cur.execute(stmt)
    conn.commit()


def drop_schema(conn: Any, dialect: Dialect) -> None:
    """Drop the shop tables (if present) and commit."""
    with _cursor(conn) as cur:
        cur.execute(f"DROP TABLE IF EXISTS {', '.join(reversed(TABLES))}")
    conn.commit()


def read_tables(conn: Any, dialect: Dialect) -> dict[str, dict[int, Row]]:
    """What the shop tables say now: ``{table: {primary key: {column: value}}}`` (same shape as the model)."""
    out: dict[str, dict[int, Row]] = {}
    try:
        with _cursor(conn) as cur:
            for table in TABLES:
                cols = COLUMNS[table]
                cur.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {PRIMARY_KEYS[table]}")
                out[table] = {int(r[0]): _normalise(dict(zip(cols, r, strict=True))) for r in cur.fetchall()}
    finally:
        conn.rollback()  # never leave a read transaction open (it would hold back Postgres' xmin)
    return out


def _normalise(row: Row) -> Row:
    for k, v in row.items():
        if isinstance(v, str) and k == "currency":
            row[k] = v.strip()
        elif isinstance(v, datetime) and v.tzinfo is not None:
            row[k] = v.astimezone(UTC).replace(tzinfo=None)
    return row


@contextmanager
def _cursor(conn: Any) -> Iterator[Any]:
    cur = conn.cursor()
    try:
        yield cur
    finally:
        cur.close()


def _set_autocommit_off(conn: Any, dialect: Dialect) -> None:
    if dialect == "postgres":
        if conn.autocommit:
            conn.autocommit = False
    elif conn.get_autocommit():
        conn.autocommit(False)


class WallClock:
    """Naive UTC now, strictly increasing (at least 1 µs apart) so every touch changes the row."""

    def __init__(self) -> None:
        self._last = datetime(1970, 1, 1)

    def __call__(self) -> datetime:
        now = datetime.now(UTC).replace(tzinfo=None)
        self._last = now if now > self._last else self._last + timedelta(microseconds=1)
        return self._last


class StepClock:
    """A deterministic clock: ``start`` then ``step`` later on every call (for reproducible rows)."""

    def __init__(self, start: datetime | None = None, step: timedelta | None = None) -> None:
        self._next = start or datetime(2024, 1, 1)
        self._step = step or timedelta(milliseconds=1)

    def __call__(self) -> datetime:
        now, self._next = self._next, self._next + self._step
        return now


@dataclass(frozen=True)
class ShopExpectation:
    """What the legacy tables say after the writer's operations, plus the metrics they imply.

    ``revenue_cents``/``order_count`` cover orders that exist and are not cancelled, per currency;
    ``paid_cents`` sums completed payments; ``stock`` is on-hand units per product.
    """

    products: dict[int, Row]
    inventory: dict[int, Row]
    customers: dict[int, Row]
    orders: dict[int, Row]
    payments: dict[int, Row]
    orders_by_status: dict[str, int] = field(default_factory=dict)
    revenue_cents: dict[str, int] = field(default_factory=dict)
    order_count: dict[str, int] = field(default_factory=dict)
    stock: dict[int, int] = field(default_factory=dict)
    payments_by_status: dict[str, int] = field(default_factory=dict)
    paid_cents: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def tables(self) -> dict[str, dict[int, Row]]:
        """Same shape as ``read_tables``."""
        return {"products": self.products, "inventory": self.inventory, "customers": self.customers,
                "orders": self.orders, "payments": self.payments}


class LegacyShopWriter:
    """Writes like the legacy shop app (one transaction per operation) and models the result.

    The model starts empty (call ``load()`` to adopt existing rows). Every method validates against
    the model first (``KeyError`` for unknown ids, ``ValueError`` for bad values), writes and commits,
    and only then updates the model; a failed transaction is rolled back and leaves the model alone.
    ``transactions`` counts committed transactions, ``history`` lists ``(operation, id)`` in order.
    """

    def __init__(self, conn: Any, dialect: Dialect, clock: Callable[[], datetime] | None = None) -> None:
        if dialect not in ("postgres", "mariadb"):
            raise ValueError(f"unknown dialect {dialect!r}")
        _set_autocommit_off(conn, dialect)
        self.conn = conn
        self.dialect: Dialect = dialect
        self.clock: Callable[[], datetime] = clock or WallClock()
        self.products: dict[int, Row] = {}
        self.inventory: dict[int, Row] = {}
        self.customers: dict[int, Row] = {}
        self.orders: dict[int, Row] = {}
        self.payments: dict[int, Row] = {}
        self.transactions = 0
        self.history: list[tuple[str, int]] = []
        self._high_water: dict[str, int] = {}
        self._order_payments: dict[int, set[int]] = {}

    # -- plumbing ------------------------------------------------------------------------------
    @contextmanager
    def _tx(self, op: str, key: int) -> Iterator[Any]:
        cur = self.conn.cursor()
        try:
            yield cur
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        finally:
            cur.close()
        self.transactions += 1
        self.history.append((op, key))

    def close(self) -> None:
        """Close the connection (when the writer owns it)."""
        self.conn.close()

    def load(self) -> None:
        """Replace the model with what the tables say now."""
        tables = read_tables(self.conn, self.dialect)
        self.products, self.inventory = tables["products"], tables["inventory"]
        self.customers, self.orders, self.payments = tables["customers"], tables["orders"], tables["payments"]
        self._order_payments = {}
        for pid, p in self.payments.items():
            self._order_payments.setdefault(p["order_id"], set()).add(pid)

    def next_id(self, table: str) -> int:
        """1 + the highest id the model has seen for ``table`` (ids are never reused within a run)."""
        model: dict[int, Row] = getattr(self, table)
        seen = self._high_water.get(table, 0)
        return max(seen, max(model, default=0)) + 1

    def _seen(self, table: str, key: int) -> None:
        self._high_water[table] = max(self._high_water.get(table, 0), key)

    def _order(self, order_id: int) -> Row:
        if order_id not in self.orders:
            raise KeyError(f"no order {order_id}")
        return self.orders[order_id]

    # -- operations ----------------------------------------------------------------------------
    def add_customer(
        self, customer_id: int, name: str | None = None, email: str | None = None, region: str | None = None
    ) -> None:
        """INSERT customers (the legacy app's sign-up)."""
        row = self._customer_row(customer_id, name, email, region)
        with self._tx("add_customer", customer_id) as cur:
            self._insert(cur, "customers", row)
        self.customers[customer_id] = row
        self._seen("customers", customer_id)

    def _customer_row(self, customer_id: int, name: str | None, email: str | None, region: str | None) -> Row:
        if customer_id in self.customers:
            raise ValueError(f"customer {customer_id} exists")
        return {"id": customer_id, "name": name or f"Customer {customer_id}",
                "email": email or f"customer{customer_id}@example.com",
                "region": region or REGIONS[customer_id % len(REGIONS)]}

    def add_product(
        self,
        product_id: int,
        price_cents: int,
        currency: str = "EUR",
        category: str = "general",
        quantity: int = 0,
        sku: str | None = None,
        name: str | None = None,
    ) -> None:
        """INSERT products + inventory (``quantity`` on hand) in one transaction."""
        if product_id in self.products:
            raise ValueError(f"product {product_id} exists")
        if price_cents < 0 or quantity < 0 or len(currency) != 3:
            raise ValueError("price and quantity must be >= 0, currency a 3-letter code")
        now = self.clock()
        product = {"id": product_id, "sku": sku or f"SKU-{product_id:06d}",
                   "name": name or f"Product {product_id}", "category": category, "price_cents": price_cents,
                   "currency": currency, "updated_at": now}
        stock = {"product_id": product_id, "quantity": quantity, "updated_at": now}
        with self._tx("add_product", product_id) as cur:
            self._insert(cur, "products", product)
            self._insert(cur, "inventory", stock)
        self.products[product_id] = product
        self.inventory[product_id] = stock
        self._seen("products", product_id)

    def restock(self, product_id: int, add: int) -> int:
        """UPDATE inventory SET quantity = quantity + add (negative: sold/written off); the new quantity."""
        stock = self.inventory[product_id]
        if stock["quantity"] + add < 0:
            raise ValueError(f"product {product_id}: only {stock['quantity']} on hand, cannot remove {-add}")
        now = self.clock()
        with self._tx("restock", product_id) as cur:
            cur.execute(
                "UPDATE inventory SET quantity = quantity + %s, updated_at = %s WHERE product_id = %s",
                (add, now, product_id),
            )
        stock["quantity"] += add
        stock["updated_at"] = now
        return int(stock["quantity"])

    def change_price(self, product_id: int, cents: int) -> None:
        """UPDATE products SET price_cents (existing orders keep their unit price)."""
        product = self.products[product_id]
        if cents < 0:
            raise ValueError("price must be >= 0")
        now = self.clock()
        with self._tx("change_price", product_id) as cur:
            cur.execute("UPDATE products SET price_cents = %s, updated_at = %s WHERE id = %s",
                        (cents, now, product_id))
        product.update(price_cents=cents, updated_at=now)

    def place_order(
        self, order_id: int, customer_id: int, product_id: int, qty: int, channel: str = "web"
    ) -> None:
        """INSERT orders (status pending, the product's current price); an unknown customer is
        registered in the same transaction (guest checkout)."""
        if order_id in self.orders:
            raise ValueError(f"order {order_id} exists")
        product = self.products[product_id]
        if qty <= 0:
            raise ValueError("quantity must be > 0")
        now = self.clock()
        customer = None
        if customer_id not in self.customers:
            customer = self._customer_row(customer_id, None, None, None)
        order = {"id": order_id, "customer_id": customer_id, "product_id": product_id, "quantity": qty,
                 "unit_price_cents": product["price_cents"], "currency": product["currency"],
                 "channel": channel, "status": "pending", "created_at": now, "updated_at": now}
        with self._tx("place_order", order_id) as cur:
            if customer is not None:
                self._insert(cur, "customers", customer)
            self._insert(cur, "orders", order)
        if customer is not None:
            self.customers[customer_id] = customer
            self._seen("customers", customer_id)
        self.orders[order_id] = order
        self._seen("orders", order_id)

    def pay(
        self, payment_id: int, order_id: int, ok: bool = True, method: str = "card", confirm: bool = False
    ) -> None:
        """INSERT payments (pending) in one transaction, then UPDATE it to completed/failed in a second;
        ``confirm=True`` also moves a pending order to confirmed in that second transaction."""
        order = self._order(order_id)
        if payment_id in self.payments:
            raise ValueError(f"payment {payment_id} exists")
        if method not in PAYMENT_METHODS:
            raise ValueError(f"unknown payment method {method!r}")
        now = self.clock()
        payment = {"id": payment_id, "order_id": order_id,
                   "amount_cents": order["quantity"] * order["unit_price_cents"],
                   "currency": order["currency"], "method": method, "status": "pending", "updated_at": now}
        with self._tx("pay", payment_id) as cur:
            self._insert(cur, "payments", payment)
        self.payments[payment_id] = payment
        self._order_payments.setdefault(order_id, set()).add(payment_id)
        self._seen("payments", payment_id)
        status = "completed" if ok else "failed"
        done = self.clock()
        confirm_order = confirm and ok and order["status"] == "pending"
        with self._tx("settle_payment", payment_id) as cur:
            cur.execute("UPDATE payments SET status = %s, updated_at = %s WHERE id = %s",
                        (status, done, payment_id))
            if confirm_order:
                cur.execute("UPDATE orders SET status = 'confirmed', updated_at = %s WHERE id = %s",
                            (done, order_id))
        payment.update(status=status, updated_at=done)
        if confirm_order:
            order.update(status="confirmed", updated_at=done)

    def set_status(self, order_id: int, status: str) -> None:
        """UPDATE orders SET status (any transition: the legacy app does not enforce a state machine).
        When the goods leave (pending/confirmed -> shipped/delivered) the same transaction then takes
        them out of the inventory row, as a warehouse does."""
        order = self._order(order_id)
        if status not in ORDER_STATUSES:
            raise ValueError(f"unknown order status {status!r}")
        leaves = order["status"] in OPEN_STATUSES and status in GONE_STATUSES
        stock = self.inventory[order["product_id"]]
        now = self.clock()
        with self._tx("set_status", order_id) as cur:
            cur.execute("UPDATE orders SET status = %s, updated_at = %s WHERE id = %s",
                        (status, now, order_id))
            if leaves:
                cur.execute(
                    "UPDATE inventory SET quantity = quantity - %s, updated_at = %s WHERE product_id = %s",
                    (order["quantity"], now, order["product_id"]),
                )
        order.update(status=status, updated_at=now)
        if leaves:
            stock["quantity"] -= order["quantity"]
            stock["updated_at"] = now

    def touch_order(self, order_id: int) -> None:
        """UPDATE orders SET updated_at only (a no-op save in the app; no business change)."""
        order = self._order(order_id)
        now = self.clock()
        with self._tx("touch_order", order_id) as cur:
            cur.execute("UPDATE orders SET updated_at = %s WHERE id = %s", (now, order_id))
        order["updated_at"] = now

    def delete_order(self, order_id: int, cascade: bool = True) -> None:
        """DELETE the order (and, with ``cascade``, its payments first, in the same transaction)."""
        self._order(order_id)
        doomed = sorted(self._order_payments.get(order_id, ())) if cascade else []
        with self._tx("delete_order", order_id) as cur:
            if doomed:
                cur.execute("DELETE FROM payments WHERE order_id = %s", (order_id,))
            cur.execute("DELETE FROM orders WHERE id = %s", (order_id,))
        for pid in doomed:
            del self.payments[pid]
        if cascade:
            self._order_payments.pop(order_id, None)
        del self.orders[order_id]

    def delete_payment(self, payment_id: int) -> None:
        """DELETE one payment row."""
        if payment_id not in self.payments:
            raise KeyError(f"no payment {payment_id}")
        with self._tx("delete_payment", payment_id) as cur:
            cur.execute("DELETE FROM payments WHERE id = %s", (payment_id,))
        payment = self.payments.pop(payment_id)
        self._order_payments.get(payment["order_id"], set()).discard(payment_id)

    def _insert(self, cur: Any, table: str, row: Row) -> None:
        cols = COLUMNS[table]
        cur.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                    tuple(row[c] for c in cols))

    # -- the model -----------------------------------------------------------------------------
    def expected(self) -> ShopExpectation:
        """A deep copy of the model plus the metrics it implies."""
        revenue: Counter[str] = Counter()
        live: Counter[str] = Counter()
        for o in self.orders.values():
            if o["status"] != "cancelled":
                revenue[o["currency"]] += o["quantity"] * o["unit_price_cents"]
                live[o["currency"]] += 1
        paid: Counter[str] = Counter()
        for p in self.payments.values():
            if p["status"] == "completed":
                paid[p["currency"]] += p["amount_cents"]
        return ShopExpectation(
            products=copy.deepcopy(self.products),
            inventory=copy.deepcopy(self.inventory),
            customers=copy.deepcopy(self.customers),
            orders=copy.deepcopy(self.orders),
            payments=copy.deepcopy(self.payments),
            orders_by_status=dict(Counter(o["status"] for o in self.orders.values())),
            revenue_cents=dict(revenue),
            order_count=dict(live),
            stock={pid: int(s["quantity"]) for pid, s in self.inventory.items()},
            payments_by_status=dict(Counter(p["status"] for p in self.payments.values())),
            paid_cents=dict(paid),
            counts={t: len(getattr(self, t)) for t in TABLES},
        )

    # -- workloads -----------------------------------------------------------------------------
    def burst(self, order_ids: Iterable[int], seed: int = 0) -> int:
        """An out-of-order update burst: every order gets a short run of quick UPDATEs, each its own
        transaction, interleaved across orders at random, skipping lifecycle steps (pending → paid →
        shipped, confirmed → delivered) with touch-only updates mixed in. Returns the transactions run."""
        rng = random.Random(seed)
        queues: list[list[Callable[[], None]]] = []
        for oid in order_ids:
            if oid in self.orders:
                queues.append(self._burst_steps(oid, rng))
        done = 0
        while queues:
            i = rng.randrange(len(queues))
            queues[i].pop(0)()
            done += 1
            if not queues[i]:
                queues.pop(i)
        return done

    def _burst_steps(self, oid: int, rng: random.Random) -> list[Callable[[], None]]:
        status = self.orders[oid]["status"]
        steps: list[Callable[[], None]] = []

        def touch() -> None:
            self.touch_order(oid)

        def to(s: str) -> Callable[[], None]:
            return lambda: self.set_status(oid, s)

        def pay_now() -> None:
            if not self.is_paid(oid):  # the app never takes a second payment for a paid order
                self.pay(self.next_id("payments"), oid, ok=True, method=rng.choice(PAYMENT_METHODS))

        if status == "pending":
            steps = [pay_now, to("shipped")]  # confirmed skipped
            if rng.random() < 0.5:
                steps.append(to("delivered"))
        elif status == "confirmed":
            steps = [to("delivered")]  # shipped skipped
        elif status == "shipped":
            steps = [to("delivered")]
        for _ in range(rng.randint(0, 2)):
            steps.insert(rng.randint(0, len(steps)), touch)
        return steps or [touch]

    def is_paid(self, oid: int) -> bool:
        return any(self.payments[p]["status"] == "completed" for p in self._order_payments.get(oid, ()))

    def available(self, product_id: int) -> int:
        """On hand minus what open (pending, confirmed) orders hold: what the shop may still sell."""
        held = sum(o["quantity"] for o in self.orders.values()
                   if o["product_id"] == product_id and o["status"] in OPEN_STATUSES)
        return int(self.inventory[product_id]["quantity"]) - held

    def run_app(self, n_orders: int, seed: int = 0, sell_off: bool = False) -> None:
        """A deterministic random mix of everything the app does, until ``n_orders`` orders were placed.

        The shop never oversells (it restocks before an order open orders could not cover) and never
        takes a second payment for a paid order; ``sell_off=True`` adds stock write-offs (inventory
        going down: a ``legacy_sync`` adjustment in AgentFlow).
        Creates a catalogue first when there is none (mostly EUR, every fifth product USD). Activity
        concentrates on the 200 most recent orders (including earlier runs'), as in a live shop. The
        back-office clean-up only deletes failed payments and cancelled orders (with their payments).
        """
        rng = random.Random(seed)
        if not self.products:
            for i in range(max(3, min(50, n_orders // 20 + 3))):
                pid = self.next_id("products")
                self.add_product(pid, price_cents=rng.randint(199, 19_999),
                                 currency="USD" if i % 5 == 4 else "EUR",
                                 category=CATEGORIES[i % len(CATEGORIES)], quantity=rng.randint(20, 200))
        n_customers = max(5, n_orders // 4)
        first_customer = max(self.customers, default=0) + 1
        recent: list[int] = list(self.orders)[-200:]  # earlier runs' orders keep moving too
        placed = 0
        ops = ("place", "progress", "restock", "sell_off", "price", "touch", "burst", "cleanup", "customer")
        weights = (40, 35, 6, 3 if sell_off else 0, 4, 3, 1, 2, 1)
        while placed < n_orders:
            op = rng.choices(ops, weights)[0]
            live = [o for o in recent[-200:] if o in self.orders]
            product_ids = list(self.products)
            if op == "place" or not live:
                oid = self.next_id("orders")
                pid, qty = rng.choice(product_ids), rng.choice((1, 1, 1, 2, 2, 3, 5))
                if self.available(pid) < qty:  # the shop does not oversell: it restocks first
                    self.restock(pid, qty - self.available(pid) + rng.randint(5, 20))
                self.place_order(oid, first_customer + rng.randrange(n_customers), pid, qty,
                                 channel=rng.choice(CHANNELS))
                recent.append(oid)
                placed += 1
            elif op == "progress":
                self._progress(rng.choice(live), rng)
            elif op == "restock":
                self.restock(rng.choice(product_ids), rng.randint(5, 50))
            elif op == "sell_off":
                pid = rng.choice(product_ids)
                spare = self.available(pid)  # units held for open orders are never written off
                if spare > 0:
                    self.restock(pid, -rng.randint(1, min(5, spare)))
            elif op == "price":
                pid = rng.choice(product_ids)
                old = self.products[pid]["price_cents"]
                self.change_price(pid, max(99, old + rng.randint(-old // 5, old // 5)))
            elif op == "touch":
                self.touch_order(rng.choice(live))
            elif op == "burst":
                self.burst(rng.sample(live, min(len(live), rng.randint(2, 6))), seed=rng.randrange(1 << 30))
            elif op == "cleanup":
                self._cleanup(rng)
            elif op == "customer":
                cid = first_customer + n_customers + rng.randrange(n_customers)
                if cid not in self.customers:
                    self.add_customer(cid)

    def _progress(self, oid: int, rng: random.Random) -> None:
        """The order's next lifecycle step as the app would take it."""
        order = self.orders[oid]
        status = order["status"]
        if status == "pending":
            if not self.is_paid(oid):
                self.pay(self.next_id("payments"), oid, ok=rng.random() > 0.15,
                         method=rng.choice(PAYMENT_METHODS), confirm=rng.random() < 0.5)
            else:
                self.set_status(oid, "cancelled" if rng.random() < 0.1 else "confirmed")
        elif status == "confirmed":
            self.set_status(oid, "cancelled" if rng.random() < 0.1 else "shipped")
        elif status == "shipped":
            self.set_status(oid, "delivered")
        elif rng.random() < 0.3:
            self.touch_order(oid)

    def _cleanup(self, rng: random.Random) -> None:
        """Back-office clean-up: purge a failed payment, or an old cancelled order (with its payments)."""
        failed = [pid for pid, p in self.payments.items() if p["status"] == "failed"]
        cancelled = [oid for oid, o in self.orders.items() if o["status"] == "cancelled"]
        if failed and (not cancelled or rng.random() < 0.6):
            self.delete_payment(rng.choice(failed))
        elif cancelled:
            self.delete_order(rng.choice(cancelled))
