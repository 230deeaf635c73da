import base64
import uuid

import pytest

from services.distributed import kafka_broker


def test_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xF8 encodes to "-" as the first base64url character; Kafka's storage tool would read it as a flag.
    dashed = uuid.UUID(bytes=bytes([0xF8]) + bytes(15))
    plain = uuid.UUID(bytes=bytes([0x10]) + bytes(15))
    ids = iter([dashed, plain])
    monkeypatch.setattr(kafka_broker.uuid, "uuid4", lambda: next(ids))
    assert base64.urlsafe_b64encode(dashed.bytes).decode().startswith("-")
    cluster_id = kafka_broker.kafka_uuid()
    assert cluster_id == base64.urlsafe_b64encode(plain.bytes).decode().rstrip("=")
    assert len(cluster_id) == 22
