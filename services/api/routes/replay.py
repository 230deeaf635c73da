"""``/v1/admin/replay/kafka``: replay a range of the caller's events to a Kafka topic in the CDC format
(distributed deployment; connectors/kafka_replay.py). Admin action on the caller's own tenant; an
``operator`` key may name another tenant (``tenant_id``)."""

from __future__ import annotations

import msgspec
from litestar import post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from connectors.kafka_replay import InvalidReplay, KafkaRangeReplay, NoKafka
from readmodels.api_keys import Principal
from services.api.blocking import in_thread
from services.api.dependencies import ADMIN, own_tenant
from services.api.errors import ApiError
from services.api.openapi import errors


class KafkaReplayRequest(msgspec.Struct):
    from_position: int | str | None = None
    to_position: int | str | None = None
    topic: str | None = None  # default <prefix>.replay; never one of the pipeline's own topics
    tenant_id: str | None = None  # default the caller's; another one: operator keys only


class KafkaReplayDone(msgspec.Struct):
    replay_id: str  # the replay-id header of every record
    topic: str
    from_position: int
    to_position: int
    produced: int


@post("/v1/admin/replay/kafka", opt=ADMIN, status_code=201, responses=errors(401, 403, 409, 413, 422))
@in_thread
def replay_to_kafka(
    principal: NamedDependency[Principal],
    kafka_replay: NamedDependency[KafkaRangeReplay],
    data: JSONBody[KafkaReplayRequest | None] = None,
) -> KafkaReplayDone:
    """Produce the caller's events in ``[from_position, to_position]`` keyed by stream id, and answer once
    Kafka acknowledged every record. 409 without Kafka (embedded deployment)."""
    body = data or KafkaReplayRequest()
    tenant = own_tenant(principal, body.tenant_id, "replay the events")
    try:
        done = kafka_replay.replay(tenant, body.from_position, body.to_position, body.topic)
    except NoKafka as exc:
        raise ApiError(409, "no_kafka", str(exc)) from exc
    except InvalidReplay as exc:
        raise ApiError(422, exc.code, exc.message) from exc
    return msgspec.convert(done, KafkaReplayDone)


REPLAY_ROUTES = [replay_to_kafka]
